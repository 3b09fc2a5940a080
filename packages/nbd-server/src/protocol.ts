/**
 * Constants and pure encoders/decoders of the NBD protocol (fixed newstyle handshake, simple and
 * structured replies, block status), after the NBD project's doc/proto.md. No I/O here.
 */

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
/** Client flags. */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags. */
export const TF = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

const REP_ERR = (n: number) => (0x80000000 | n) >>> 0;
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: REP_ERR(1),
  ERR_POLICY: REP_ERR(2),
  ERR_INVALID: REP_ERR(3),
  ERR_PLATFORM: REP_ERR(4),
  ERR_TLS_REQD: REP_ERR(5),
  ERR_UNKNOWN: REP_ERR(6),
  ERR_SHUTDOWN: REP_ERR(7),
  ERR_BLOCK_SIZE_REQD: REP_ERR(8),
  ERR_TOO_BIG: REP_ERR(9),
} as const;

export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const;

/** base:allocation flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

export const BASE_ALLOCATION = 'base:allocation';

/** Error values of the transmission phase (errno-like, but fixed by the protocol). */
export const NBD_ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Strings in the protocol (export names, messages) must not exceed this. */
export const MAX_STRING = 4096;
/** The size of a transmission request header. */
export const REQUEST_BYTES = 28;

export function optionName(option: number): string {
  const entry = Object.entries(OPT).find(([, v]) => v === option);
  return entry ? `NBD_OPT_${entry[0]}` : `option ${option}`;
}

export function commandName(type: number): string {
  const entry = Object.entries(CMD).find(([, v]) => v === type);
  return entry ? `NBD_CMD_${entry[0]}` : `command ${type}`;
}

/** The server's greeting: NBDMAGIC, IHAVEOPT and the handshake flags. */
export function encodeGreeting(flags: number): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

export interface OptionHeader {
  magic: bigint;
  option: number;
  length: number;
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  return { magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** NBD_REP_SERVER payload: name length, name, description. */
export function encodeServerReply(name: string, description: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(description, 'utf8');
  const b = Buffer.alloc(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

export function encodeInfoExport(size: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(INFO.EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

export function encodeInfoString(type: typeof INFO.NAME | typeof INFO.DESCRIPTION, text: string): Buffer {
  const s = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(2 + s.length);
  b.writeUInt16BE(type, 0);
  s.copy(b, 2);
  return b;
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(INFO.BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum >>> 0, 10);
  return b;
}

export function encodeMetaContextReply(id: number, name: string): Buffer {
  const s = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + s.length);
  b.writeUInt32BE(id, 0);
  s.copy(b, 4);
  return b;
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags and (unless NO_ZEROES) 124 zero bytes. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

/** Thrown by the option parsers for syntactically invalid option data (NBD_REP_ERR_INVALID). */
export class OptionSyntaxError extends Error {}

/** A violation of the protocol that ends the connection (a "hard disconnect"). */
export class ProtocolViolation extends Error {}

/** A cursor over option data that throws OptionSyntaxError instead of reading past the end. */
class Cursor {
  private pos = 0;
  constructor(private readonly b: Buffer) {}
  u16(): number {
    this.need(2);
    const v = this.b.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  string(length: number): string {
    if (length > MAX_STRING) throw new OptionSyntaxError(`string of ${length} bytes exceeds ${MAX_STRING}`);
    this.need(length);
    const s = this.b.toString('utf8', this.pos, this.pos + length);
    this.pos += length;
    return s;
  }
  end(): void {
    if (this.pos !== this.b.length)
      throw new OptionSyntaxError(`${this.b.length - this.pos} unexpected trailing bytes`);
  }
  private need(n: number): void {
    if (this.pos + n > this.b.length) throw new OptionSyntaxError('option data is too short');
  }
}

export interface InfoRequest {
  name: string;
  requests: number[];
}

/** NBD_OPT_INFO / NBD_OPT_GO data: name length, name, count, info types. */
export function decodeInfoRequest(data: Buffer): InfoRequest {
  const c = new Cursor(data);
  const name = c.string(c.u32());
  const count = c.u16();
  const requests: number[] = [];
  for (let i = 0; i < count; i++) requests.push(c.u16());
  c.end();
  return { name, requests };
}

export interface MetaContextRequest {
  name: string;
  queries: string[];
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data: export name, query count, queries. */
export function decodeMetaContextRequest(data: Buffer): MetaContextRequest {
  const c = new Cursor(data);
  const name = c.string(c.u32());
  const count = c.u32();
  if (count > 1024) throw new OptionSyntaxError(`${count} queries are too many`);
  const queries: string[] = [];
  for (let i = 0; i < count; i++) queries.push(c.string(c.u32()));
  c.end();
  return { name, queries };
}

export interface Request {
  magic: number;
  flags: number;
  type: number;
  /** The client's opaque cookie, echoed in replies. */
  handle: Buffer;
  offset: number;
  length: number;
}

/** Decodes a 28-byte request header. Offsets beyond 2^53 become NaN-safe `Infinity` (always out of range). */
export function decodeRequest(b: Buffer): Request {
  const offset = b.readBigUInt64BE(16);
  return {
    magic: b.readUInt32BE(0),
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: Buffer.from(b.subarray(8, 16)),
    offset: offset > BigInt(Number.MAX_SAFE_INTEGER) ? Number.POSITIVE_INFINITY : Number(offset),
    length: b.readUInt32BE(24),
  };
}

export function encodeRequest(r: Omit<Request, 'magic'> & { magic?: number }): Buffer {
  const b = Buffer.alloc(REQUEST_BYTES);
  b.writeUInt32BE(r.magic ?? REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  r.handle.copy(b, 8, 0, 8);
  b.writeBigUInt64BE(BigInt(r.offset), 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

export function encodeSimpleReply(handle: Buffer, error: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  handle.copy(b, 8, 0, 8);
  return b;
}

/** The 20-byte header of a structured reply chunk; the payload follows separately. */
export function encodeStructuredHeader(handle: Buffer, flags: number, type: number, length: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  handle.copy(b, 8, 0, 8);
  b.writeUInt32BE(length, 16);
  return b;
}

/** Header plus the 8-byte offset of an NBD_REPLY_TYPE_OFFSET_DATA chunk carrying `dataLength` bytes. */
export function encodeOffsetDataHeader(
  handle: Buffer,
  flags: number,
  offset: number,
  dataLength: number,
): Buffer {
  const b = Buffer.alloc(28);
  encodeStructuredHeader(handle, flags, REPLY_TYPE.OFFSET_DATA, 8 + dataLength).copy(b, 0);
  b.writeBigUInt64BE(BigInt(offset), 20);
  return b;
}

export function encodeOffsetHole(handle: Buffer, flags: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(32);
  encodeStructuredHeader(handle, flags, REPLY_TYPE.OFFSET_HOLE, 12).copy(b, 0);
  b.writeBigUInt64BE(BigInt(offset), 20);
  b.writeUInt32BE(length, 28);
  return b;
}

export function encodeStructuredError(handle: Buffer, error: number, message: string): Buffer {
  let m = Buffer.from(message, 'utf8');
  if (m.length > MAX_STRING) m = m.subarray(0, MAX_STRING);
  const b = Buffer.alloc(20 + 6 + m.length);
  encodeStructuredHeader(handle, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, 6 + m.length).copy(b, 0);
  b.writeUInt32BE(error, 20);
  b.writeUInt16BE(m.length, 24);
  m.copy(b, 26);
  return b;
}

export function encodeStructuredNone(handle: Buffer): Buffer {
  return encodeStructuredHeader(handle, REPLY_FLAG_DONE, REPLY_TYPE.NONE, 0);
}

export interface Extent {
  length: number;
  flags: number;
}

export function encodeBlockStatus(
  handle: Buffer,
  flags: number,
  contextId: number,
  extents: Extent[],
): Buffer {
  const payload = 4 + 8 * extents.length;
  const b = Buffer.alloc(20 + payload);
  encodeStructuredHeader(handle, flags, REPLY_TYPE.BLOCK_STATUS, payload).copy(b, 0);
  b.writeUInt32BE(contextId, 20);
  extents.forEach((e, i) => {
    b.writeUInt32BE(e.length, 24 + 8 * i);
    b.writeUInt32BE(e.flags, 28 + 8 * i);
  });
  return b;
}
