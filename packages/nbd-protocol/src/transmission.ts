/**
 * The messages of the transmission phase: request headers, simple replies and the chunks of structured
 * replies (data, holes, errors, block status).
 */
import {
  MAX_STRING,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  REQUEST_BYTES,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from './constants.js';

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
