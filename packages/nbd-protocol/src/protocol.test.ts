import { describe, expect, it } from 'vitest';
import {
  BASE_ALLOCATION,
  CMD,
  CMD_FLAG,
  commandName,
  decodeGreeting,
  decodeInfoBlockSize,
  decodeInfoExport,
  decodeInfoRequest,
  decodeMetaContextReply,
  decodeMetaContextRequest,
  decodeOptionHeader,
  decodeOptionReplyHeader,
  decodeRequest,
  encodeBlockStatus,
  encodeClientFlags,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoRequest,
  encodeMetaContextReply,
  encodeMetaContextRequest,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeOption,
  encodeOptionReply,
  encodeRequest,
  encodeSimpleReply,
  encodeStructuredError,
  errorName,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  GREETING_BYTES,
  IHAVEOPT,
  INFO,
  infoType,
  isErrorReply,
  MAX_STRING,
  NBD_ERR,
  NBDMAGIC,
  OPT,
  OPTION_HEADER_BYTES,
  OPTION_REPLY_HEADER_BYTES,
  OPTION_REPLY_MAGIC,
  OptionSyntaxError,
  optionName,
  REP,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  REQUEST_BYTES,
  REQUEST_MAGIC,
  replyName,
  SIMPLE_REPLY_MAGIC,
  STATE_HOLE,
  STATE_ZERO,
  STRUCTURED_REPLY_MAGIC,
  TF,
} from './index.js';

const hex = (b: Buffer) => b.toString('hex');

describe('the numbers of doc/proto.md', () => {
  it('has the magics', () => {
    expect(NBDMAGIC).toBe(0x4e42444d41474943n);
    // "NBDMAGIC" and "IHAVEOPT" in ASCII, as the spec spells them.
    expect(Buffer.from(NBDMAGIC.toString(16), 'hex').toString('latin1')).toBe('NBDMAGIC');
    expect(IHAVEOPT).toBe(0x49484156454f5054n);
    expect(Buffer.from(IHAVEOPT.toString(16), 'hex').toString('latin1')).toBe('IHAVEOPT');
    expect(OPTION_REPLY_MAGIC).toBe(0x3e889045565a9n);
    expect(REQUEST_MAGIC).toBe(0x25609513);
    expect(SIMPLE_REPLY_MAGIC).toBe(0x67446698);
    expect(STRUCTURED_REPLY_MAGIC).toBe(0x668e33ef);
  });

  it('has the option, reply, info and command codes', () => {
    expect(OPT).toMatchObject({ EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7 });
    expect(OPT).toMatchObject({ STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 });
    expect(REP).toMatchObject({ ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4 });
    expect(REP.ERR_UNSUP).toBe(2 ** 31 + 1);
    expect(REP.ERR_UNKNOWN).toBe(2 ** 31 + 6);
    expect(REP.ERR_TOO_BIG).toBe(2 ** 31 + 9);
    expect(INFO).toEqual({ EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 });
    expect(CMD).toMatchObject({ READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6 });
    expect(CMD.BLOCK_STATUS).toBe(7);
    expect(REPLY_TYPE).toEqual({
      NONE: 0,
      OFFSET_DATA: 1,
      OFFSET_HOLE: 2,
      BLOCK_STATUS: 5,
      ERROR: 32769,
      ERROR_OFFSET: 32770,
    });
    expect(NBD_ERR).toMatchObject({ EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28, ENOTSUP: 95, ESHUTDOWN: 108 });
  });

  it('has the flags', () => {
    expect([FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES]).toEqual([
      1, 2, 1, 2,
    ]);
    expect(TF).toMatchObject({
      HAS_FLAGS: 1,
      READ_ONLY: 2,
      SEND_FLUSH: 4,
      SEND_DF: 128,
      CAN_MULTI_CONN: 256,
    });
    expect(CMD_FLAG).toMatchObject({ FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16 });
    expect([REPLY_FLAG_DONE, STATE_HOLE, STATE_ZERO]).toEqual([1, 1, 2]);
    expect(BASE_ALLOCATION).toBe('base:allocation');
  });

  it('names codes for messages', () => {
    expect(optionName(OPT.GO)).toBe('NBD_OPT_GO');
    expect(optionName(99)).toBe('option 99');
    expect(commandName(CMD.BLOCK_STATUS)).toBe('NBD_CMD_BLOCK_STATUS');
    expect(commandName(99)).toBe('command 99');
    expect(replyName(REP.ERR_POLICY)).toBe('NBD_REP_ERR_POLICY');
    expect(replyName(99)).toBe('reply 99');
    expect(errorName(NBD_ERR.EIO)).toBe('EIO');
    expect(errorName(99)).toBeUndefined();
  });
});

describe('handshake messages', () => {
  it('greeting: the bytes of the spec, and back', () => {
    const b = encodeGreeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    expect(b).toHaveLength(GREETING_BYTES);
    expect(hex(b)).toBe('4e42444d41474943' + '49484156454f5054' + '0003');
    expect(decodeGreeting(b)).toEqual({ magic: NBDMAGIC, optionMagic: IHAVEOPT, flags: 3 });
  });

  it('client flags are 32 bits', () => {
    expect(hex(encodeClientFlags(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES))).toBe('00000003');
  });

  it('option: header and data, and back', () => {
    const data = Buffer.from('payload');
    const b = encodeOption(OPT.GO, data);
    expect(hex(b.subarray(0, OPTION_HEADER_BYTES))).toBe('49484156454f5054' + '00000007' + '00000007');
    expect(decodeOptionHeader(b)).toEqual({ magic: IHAVEOPT, option: OPT.GO, length: data.length });
    expect(b.subarray(OPTION_HEADER_BYTES)).toEqual(data);
    expect(encodeOption(OPT.ABORT)).toHaveLength(OPTION_HEADER_BYTES);
  });

  it('option reply: header and data, and back; errors have the high bit', () => {
    const b = encodeOptionReply(OPT.GO, REP.ERR_UNKNOWN, Buffer.from('no such export'));
    expect(hex(b.subarray(0, 8))).toBe('0003e889045565a9');
    expect(decodeOptionReplyHeader(b)).toEqual({
      magic: OPTION_REPLY_MAGIC,
      option: OPT.GO,
      type: REP.ERR_UNKNOWN,
      length: 14,
    });
    expect(b.toString('utf8', OPTION_REPLY_HEADER_BYTES)).toBe('no such export');
    expect(isErrorReply(REP.ERR_UNKNOWN)).toBe(true);
    expect(isErrorReply(REP.ACK)).toBe(false);
  });

  it('NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE, and back', () => {
    const size = 2 ** 40 + 12345;
    const exp = encodeInfoExport(size, TF.HAS_FLAGS | TF.READ_ONLY);
    expect(infoType(exp)).toBe(INFO.EXPORT);
    expect(decodeInfoExport(exp)).toEqual({ size, flags: 3 });
    const bs = encodeInfoBlockSize(1, 4096, 32 * 1024 * 1024);
    expect(infoType(bs)).toBe(INFO.BLOCK_SIZE);
    expect(decodeInfoBlockSize(bs)).toEqual({ minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 });
  });

  it('NBD_OPT_GO data, and back; short or trailing data is a syntax error', () => {
    const request = { name: 'vm/disk ü', requests: [INFO.NAME, INFO.BLOCK_SIZE] };
    const b = encodeInfoRequest(request);
    expect(hex(encodeInfoRequest({ name: 'a', requests: [INFO.BLOCK_SIZE] }))).toBe(
      '00000001' + '61' + '0001' + '0003',
    );
    expect(decodeInfoRequest(b)).toEqual(request);
    expect(decodeInfoRequest(encodeInfoRequest({ name: '', requests: [] }))).toEqual({
      name: '',
      requests: [],
    });
    expect(() => decodeInfoRequest(b.subarray(0, b.length - 1))).toThrow(OptionSyntaxError);
    expect(() => decodeInfoRequest(Buffer.concat([b, Buffer.alloc(1)]))).toThrow(/1 unexpected trailing/);
  });

  it('meta context request and reply, and back', () => {
    const request = { name: 'last', queries: [BASE_ALLOCATION, 'qemu:dirty-bitmap:b0'] };
    expect(decodeMetaContextRequest(encodeMetaContextRequest(request))).toEqual(request);
    expect(hex(encodeMetaContextRequest({ name: 'x', queries: ['y'] }))).toBe(
      '00000001' + '78' + '00000001' + '00000001' + '79',
    );
    const none = { name: 'x', queries: [] };
    expect(decodeMetaContextRequest(encodeMetaContextRequest(none))).toEqual(none);
    expect(decodeMetaContextReply(encodeMetaContextReply(7, BASE_ALLOCATION))).toEqual({
      id: 7,
      name: BASE_ALLOCATION,
    });
  });

  it('refuses strings longer than the protocol allows', () => {
    const long = encodeInfoRequest({ name: 'x'.repeat(MAX_STRING + 1), requests: [] });
    expect(() => decodeInfoRequest(long)).toThrow(/exceeds 4096/);
  });

  it('NBD_OPT_EXPORT_NAME reply: 124 zero bytes unless NO_ZEROES', () => {
    expect(encodeExportNameReply(1024, 1, false)).toHaveLength(134);
    expect(hex(encodeExportNameReply(1024, 1, true))).toBe('0000000000000400' + '0001');
  });
});

describe('transmission messages', () => {
  const handle = Buffer.from('0102030405060708', 'hex');

  it('request header, and back', () => {
    const request = { flags: CMD_FLAG.FUA, type: CMD.WRITE, handle, offset: 2 ** 40, length: 65536 };
    const b = encodeRequest(request);
    expect(b).toHaveLength(REQUEST_BYTES);
    expect(hex(b)).toBe('25609513' + '0001' + '0001' + hex(handle) + '0000010000000000' + '00010000');
    expect(decodeRequest(b)).toEqual({ magic: REQUEST_MAGIC, ...request });
  });

  it('an offset beyond 2^53 decodes as out of any range', () => {
    const b = encodeRequest({ flags: 0, type: CMD.READ, handle, offset: 0, length: 1 });
    b.writeBigUInt64BE(2n ** 64n - 1n, 16);
    expect(decodeRequest(b).offset).toBe(Number.POSITIVE_INFINITY);
  });

  it('simple reply', () => {
    expect(hex(encodeSimpleReply(handle, NBD_ERR.EIO))).toBe('67446698' + '00000005' + hex(handle));
  });

  it('structured reply chunks', () => {
    expect(hex(encodeOffsetDataHeader(handle, 0, 4096, 512))).toBe(
      '668e33ef' + '0000' + '0001' + hex(handle) + '00000208' + '0000000000001000',
    );
    expect(hex(encodeOffsetHole(handle, REPLY_FLAG_DONE, 0, 4096))).toBe(
      '668e33ef' + '0001' + '0002' + hex(handle) + '0000000c' + '0000000000000000' + '00001000',
    );
    expect(hex(encodeStructuredError(handle, NBD_ERR.EINVAL, 'no'))).toBe(
      '668e33ef' + '0001' + '8001' + hex(handle) + '00000008' + '00000016' + '0002' + '6e6f',
    );
    const long = encodeStructuredError(handle, NBD_ERR.EIO, 'x'.repeat(MAX_STRING + 10));
    expect(long.readUInt16BE(24)).toBe(MAX_STRING);
    expect(hex(encodeBlockStatus(handle, REPLY_FLAG_DONE, 1, [{ length: 65536, flags: STATE_HOLE }]))).toBe(
      '668e33ef' + '0001' + '0005' + hex(handle) + '0000000c' + '00000001' + '00010000' + '00000001',
    );
  });
});
