/**
 * The messages of the fixed newstyle handshake: the greeting, options and their replies. Each encoder
 * has the decoder of the other side beside it, so the client and the server cannot drift apart.
 */
import { IHAVEOPT, INFO, NBDMAGIC, OPTION_REPLY_MAGIC } from './constants.js';
import { Cursor } from './cursor.js';
import { OptionSyntaxError } from './errors.js';

export interface Greeting {
  /** NBDMAGIC in a newstyle greeting. */
  magic: bigint;
  /** IHAVEOPT in a newstyle greeting. */
  optionMagic: bigint;
  /** Handshake flags (FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES). */
  flags: number;
}

export const GREETING_BYTES = 18;

/** The server's greeting: NBDMAGIC, IHAVEOPT and the handshake flags. */
export function encodeGreeting(flags: number): Buffer {
  const b = Buffer.alloc(GREETING_BYTES);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

export function decodeGreeting(b: Buffer): Greeting {
  return { magic: b.readBigUInt64BE(0), optionMagic: b.readBigUInt64BE(8), flags: b.readUInt16BE(16) };
}

/** The client's answer to the greeting: its flags (FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES). */
export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

export interface OptionHeader {
  magic: bigint;
  option: number;
  length: number;
}

export const OPTION_HEADER_BYTES = 16;

/** A client's option: IHAVEOPT, the option, the data's length, then the data. */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, OPTION_HEADER_BYTES);
  return b;
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  return { magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

export interface OptionReplyHeader {
  magic: bigint;
  option: number;
  /** An NBD_REP_* value; errors have the high bit set. */
  type: number;
  /** Bytes of data that follow the header. */
  length: number;
}

export const OPTION_REPLY_HEADER_BYTES = 20;

export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_REPLY_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, OPTION_REPLY_HEADER_BYTES);
  return b;
}

export function decodeOptionReplyHeader(b: Buffer): OptionReplyHeader {
  return {
    magic: b.readBigUInt64BE(0),
    option: b.readUInt32BE(8),
    type: b.readUInt32BE(12),
    length: b.readUInt32BE(16),
  };
}

/** NBD_REP_ERR_* replies have the high bit set. */
export function isErrorReply(type: number): boolean {
  return (type & 0x80000000) !== 0;
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

/** The type of an NBD_REP_INFO payload (an INFO.* value). */
export function infoType(data: Buffer): number {
  return data.readUInt16BE(0);
}

export function encodeInfoExport(size: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(INFO.EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

/** An NBD_INFO_EXPORT payload: the export's size and transmission flags. */
export function decodeInfoExport(data: Buffer): { size: number; flags: number } {
  return { size: Number(data.readBigUInt64BE(2)), flags: data.readUInt16BE(10) };
}

export function encodeInfoString(type: typeof INFO.NAME | typeof INFO.DESCRIPTION, text: string): Buffer {
  const s = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(2 + s.length);
  b.writeUInt16BE(type, 0);
  s.copy(b, 2);
  return b;
}

export interface BlockSize {
  minimum: number;
  preferred: number;
  maximum: number;
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(INFO.BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum >>> 0, 10);
  return b;
}

export function decodeInfoBlockSize(data: Buffer): BlockSize {
  return { minimum: data.readUInt32BE(2), preferred: data.readUInt32BE(6), maximum: data.readUInt32BE(10) };
}

export function encodeMetaContextReply(id: number, name: string): Buffer {
  const s = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + s.length);
  b.writeUInt32BE(id, 0);
  s.copy(b, 4);
  return b;
}

/** An NBD_REP_META_CONTEXT payload: the context's id and name. */
export function decodeMetaContextReply(data: Buffer): { id: number; name: string } {
  return { id: data.readUInt32BE(0), name: data.toString('utf8', 4) };
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags and (unless NO_ZEROES) 124 zero bytes. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

export interface InfoRequest {
  name: string;
  requests: number[];
}

/** NBD_OPT_INFO / NBD_OPT_GO data: name length, name, count, info types. */
export function encodeInfoRequest({ name, requests }: InfoRequest): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length + 2 + 2 * requests.length);
  let at = b.writeUInt32BE(n.length, 0);
  at += n.copy(b, at);
  at = b.writeUInt16BE(requests.length, at);
  for (const type of requests) at = b.writeUInt16BE(type, at);
  return b;
}

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
export function encodeMetaContextRequest({ name, queries }: MetaContextRequest): Buffer {
  const strings = [name, ...queries].map((s) => Buffer.from(s, 'utf8'));
  const b = Buffer.alloc(4 + strings.reduce((n, s) => n + 4 + s.length, 0));
  let at = 0;
  for (const [i, s] of strings.entries()) {
    at = b.writeUInt32BE(s.length, at);
    at += s.copy(b, at);
    if (i === 0) at = b.writeUInt32BE(queries.length, at);
  }
  return b;
}

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
