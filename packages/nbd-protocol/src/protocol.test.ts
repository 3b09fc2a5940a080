import { describe, expect, it } from 'vitest';
import * as nbd from './index.js';

const hex = (b: Buffer) => b.toString('hex');
/** The hex of a message, written field by field as the spec lays it out. */
const wire = (...fields: string[]) => fields.join('');

describe('the numbers of doc/proto.md', () => {
  it('has the magics', () => {
    expect(nbd.NBDMAGIC).toBe(0x4e42444d41474943n);
    // "nbd.NBDMAGIC" and "nbd.IHAVEOPT" in ASCII, as the spec spells them.
    expect(Buffer.from(nbd.NBDMAGIC.toString(16), 'hex').toString('latin1')).toBe('NBDMAGIC');
    expect(nbd.IHAVEOPT).toBe(0x49484156454f5054n);
    expect(Buffer.from(nbd.IHAVEOPT.toString(16), 'hex').toString('latin1')).toBe('IHAVEOPT');
    expect(nbd.OPTION_REPLY_MAGIC).toBe(0x3e889045565a9n);
    expect(nbd.REQUEST_MAGIC).toBe(0x25609513);
    expect(nbd.SIMPLE_REPLY_MAGIC).toBe(0x67446698);
    expect(nbd.STRUCTURED_REPLY_MAGIC).toBe(0x668e33ef);
  });

  it('has the option, reply, info and command codes', () => {
    expect(nbd.OPT).toMatchObject({ EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7 });
    expect(nbd.OPT).toMatchObject({ STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 });
    expect(nbd.REP).toMatchObject({ ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4 });
    expect(nbd.REP.ERR_UNSUP).toBe(2 ** 31 + 1);
    expect(nbd.REP.ERR_UNKNOWN).toBe(2 ** 31 + 6);
    expect(nbd.REP.ERR_TOO_BIG).toBe(2 ** 31 + 9);
    expect(nbd.INFO).toEqual({ EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 });
    expect(nbd.CMD).toMatchObject({ READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6 });
    expect(nbd.CMD.BLOCK_STATUS).toBe(7);
    expect(nbd.REPLY_TYPE).toEqual({
      NONE: 0,
      OFFSET_DATA: 1,
      OFFSET_HOLE: 2,
      BLOCK_STATUS: 5,
      ERROR: 32769,
      ERROR_OFFSET: 32770,
    });
    expect(nbd.NBD_ERR).toMatchObject({
      EPERM: 1,
      EIO: 5,
      EINVAL: 22,
      ENOSPC: 28,
      ENOTSUP: 95,
      ESHUTDOWN: 108,
    });
  });

  it('has the flags', () => {
    expect([
      nbd.FLAG_FIXED_NEWSTYLE,
      nbd.FLAG_NO_ZEROES,
      nbd.FLAG_C_FIXED_NEWSTYLE,
      nbd.FLAG_C_NO_ZEROES,
    ]).toEqual([1, 2, 1, 2]);
    expect(nbd.TF).toMatchObject({
      HAS_FLAGS: 1,
      READ_ONLY: 2,
      SEND_FLUSH: 4,
      SEND_DF: 128,
      CAN_MULTI_CONN: 256,
    });
    expect(nbd.CMD_FLAG).toMatchObject({ FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16 });
    expect([nbd.REPLY_FLAG_DONE, nbd.STATE_HOLE, nbd.STATE_ZERO]).toEqual([1, 1, 2]);
    expect(nbd.BASE_ALLOCATION).toBe('base:allocation');
  });

  it('names codes for messages', () => {
    expect(nbd.optionName(nbd.OPT.GO)).toBe('NBD_OPT_GO');
    expect(nbd.optionName(99)).toBe('option 99');
    expect(nbd.commandName(nbd.CMD.BLOCK_STATUS)).toBe('NBD_CMD_BLOCK_STATUS');
    expect(nbd.commandName(99)).toBe('command 99');
    expect(nbd.replyName(nbd.REP.ERR_POLICY)).toBe('NBD_REP_ERR_POLICY');
    expect(nbd.replyName(99)).toBe('reply 99');
    expect(nbd.errorName(nbd.NBD_ERR.EIO)).toBe('EIO');
    expect(nbd.errorName(99)).toBeUndefined();
  });
});

describe('handshake messages', () => {
  it('greeting: the bytes of the spec, and back', () => {
    const b = nbd.encodeGreeting(nbd.FLAG_FIXED_NEWSTYLE | nbd.FLAG_NO_ZEROES);
    expect(b).toHaveLength(nbd.GREETING_BYTES);
    expect(hex(b)).toBe(wire('4e42444d41474943', '49484156454f5054', '0003'));
    expect(nbd.decodeGreeting(b)).toEqual({ magic: nbd.NBDMAGIC, optionMagic: nbd.IHAVEOPT, flags: 3 });
  });

  it('client flags are 32 bits', () => {
    expect(hex(nbd.encodeClientFlags(nbd.FLAG_C_FIXED_NEWSTYLE | nbd.FLAG_C_NO_ZEROES))).toBe('00000003');
  });

  it('option: header and data, and back', () => {
    const data = Buffer.from('payload');
    const b = nbd.encodeOption(nbd.OPT.GO, data);
    expect(hex(b.subarray(0, nbd.OPTION_HEADER_BYTES))).toBe(
      wire('49484156454f5054', '00000007', '00000007'),
    );
    expect(nbd.decodeOptionHeader(b)).toEqual({
      magic: nbd.IHAVEOPT,
      option: nbd.OPT.GO,
      length: data.length,
    });
    expect(b.subarray(nbd.OPTION_HEADER_BYTES)).toEqual(data);
    expect(nbd.encodeOption(nbd.OPT.ABORT)).toHaveLength(nbd.OPTION_HEADER_BYTES);
  });

  it('option reply: header and data, and back; errors have the high bit', () => {
    const b = nbd.encodeOptionReply(nbd.OPT.GO, nbd.REP.ERR_UNKNOWN, Buffer.from('no such export'));
    expect(hex(b.subarray(0, 8))).toBe('0003e889045565a9');
    expect(nbd.decodeOptionReplyHeader(b)).toEqual({
      magic: nbd.OPTION_REPLY_MAGIC,
      option: nbd.OPT.GO,
      type: nbd.REP.ERR_UNKNOWN,
      length: 14,
    });
    expect(b.toString('utf8', nbd.OPTION_REPLY_HEADER_BYTES)).toBe('no such export');
    expect(nbd.isErrorReply(nbd.REP.ERR_UNKNOWN)).toBe(true);
    expect(nbd.isErrorReply(nbd.REP.ACK)).toBe(false);
  });

  it('NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE, and back', () => {
    const size = 2 ** 40 + 12345;
    const exp = nbd.encodeInfoExport(size, nbd.TF.HAS_FLAGS | nbd.TF.READ_ONLY);
    expect(nbd.infoType(exp)).toBe(nbd.INFO.EXPORT);
    expect(nbd.decodeInfoExport(exp)).toEqual({ size, flags: 3 });
    const bs = nbd.encodeInfoBlockSize(1, 4096, 32 * 1024 * 1024);
    expect(nbd.infoType(bs)).toBe(nbd.INFO.BLOCK_SIZE);
    expect(nbd.decodeInfoBlockSize(bs)).toEqual({ minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 });
  });

  it('NBD_OPT_GO data, and back; short or trailing data is a syntax error', () => {
    const request = { name: 'vm/disk ü', requests: [nbd.INFO.NAME, nbd.INFO.BLOCK_SIZE] };
    const b = nbd.encodeInfoRequest(request);
    expect(hex(nbd.encodeInfoRequest({ name: 'a', requests: [nbd.INFO.BLOCK_SIZE] }))).toBe(
      wire('00000001', '61', '0001', '0003'),
    );
    expect(nbd.decodeInfoRequest(b)).toEqual(request);
    expect(nbd.decodeInfoRequest(nbd.encodeInfoRequest({ name: '', requests: [] }))).toEqual({
      name: '',
      requests: [],
    });
    expect(() => nbd.decodeInfoRequest(b.subarray(0, b.length - 1))).toThrow(nbd.OptionSyntaxError);
    expect(() => nbd.decodeInfoRequest(Buffer.concat([b, Buffer.alloc(1)]))).toThrow(/1 unexpected trailing/);
  });

  it('meta context request and reply, and back', () => {
    const request = { name: 'last', queries: [nbd.BASE_ALLOCATION, 'qemu:dirty-bitmap:b0'] };
    expect(nbd.decodeMetaContextRequest(nbd.encodeMetaContextRequest(request))).toEqual(request);
    expect(hex(nbd.encodeMetaContextRequest({ name: 'x', queries: ['y'] }))).toBe(
      wire('00000001', '78', '00000001', '00000001', '79'),
    );
    const none = { name: 'x', queries: [] };
    expect(nbd.decodeMetaContextRequest(nbd.encodeMetaContextRequest(none))).toEqual(none);
    expect(nbd.decodeMetaContextReply(nbd.encodeMetaContextReply(7, nbd.BASE_ALLOCATION))).toEqual({
      id: 7,
      name: nbd.BASE_ALLOCATION,
    });
  });

  it('refuses strings longer than the protocol allows', () => {
    const long = nbd.encodeInfoRequest({ name: 'x'.repeat(nbd.MAX_STRING + 1), requests: [] });
    expect(() => nbd.decodeInfoRequest(long)).toThrow(/exceeds 4096/);
  });

  it('NBD_OPT_EXPORT_NAME reply: 124 zero bytes unless NO_ZEROES', () => {
    expect(nbd.encodeExportNameReply(1024, 1, false)).toHaveLength(134);
    expect(hex(nbd.encodeExportNameReply(1024, 1, true))).toBe(wire('0000000000000400', '0001'));
  });
});

describe('transmission messages', () => {
  const handle = Buffer.from('0102030405060708', 'hex');

  it('request header, and back', () => {
    const request = { flags: nbd.CMD_FLAG.FUA, type: nbd.CMD.WRITE, handle, offset: 2 ** 40, length: 65536 };
    const b = nbd.encodeRequest(request);
    expect(b).toHaveLength(nbd.REQUEST_BYTES);
    expect(hex(b)).toBe(wire('25609513', '0001', '0001', hex(handle), '0000010000000000', '00010000'));
    expect(nbd.decodeRequest(b)).toEqual({ magic: nbd.REQUEST_MAGIC, ...request });
  });

  it('an offset beyond 2^53 decodes as out of any range', () => {
    const b = nbd.encodeRequest({ flags: 0, type: nbd.CMD.READ, handle, offset: 0, length: 1 });
    b.writeBigUInt64BE(2n ** 64n - 1n, 16);
    expect(nbd.decodeRequest(b).offset).toBe(Number.POSITIVE_INFINITY);
  });

  it('simple reply', () => {
    expect(hex(nbd.encodeSimpleReply(handle, nbd.NBD_ERR.EIO))).toBe(
      wire('67446698', '00000005', hex(handle)),
    );
  });

  it('structured reply chunks', () => {
    expect(hex(nbd.encodeOffsetDataHeader(handle, 0, 4096, 512))).toBe(
      wire('668e33ef', '0000', '0001', hex(handle), '00000208', '0000000000001000'),
    );
    expect(hex(nbd.encodeOffsetHole(handle, nbd.REPLY_FLAG_DONE, 0, 4096))).toBe(
      wire('668e33ef', '0001', '0002', hex(handle), '0000000c', '0000000000000000', '00001000'),
    );
    expect(hex(nbd.encodeStructuredError(handle, nbd.NBD_ERR.EINVAL, 'no'))).toBe(
      wire('668e33ef', '0001', '8001', hex(handle), '00000008', '00000016', '0002', '6e6f'),
    );
    const long = nbd.encodeStructuredError(handle, nbd.NBD_ERR.EIO, 'x'.repeat(nbd.MAX_STRING + 10));
    expect(long.readUInt16BE(24)).toBe(nbd.MAX_STRING);
    expect(
      hex(nbd.encodeBlockStatus(handle, nbd.REPLY_FLAG_DONE, 1, [{ length: 65536, flags: nbd.STATE_HOLE }])),
    ).toBe(wire('668e33ef', '0001', '0005', hex(handle), '0000000c', '00000001', '00010000', '00000001'));
  });
});
