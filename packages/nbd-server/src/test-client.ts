/**
 * A deliberately small NBD client for tests that need to misbehave (oversized requests, vanishing
 * mid-transfer, raw option replies) in ways real clients refuse to. Not exported from the package.
 */
import { connect, type Socket } from 'node:net';
import {
  BASE_ALLOCATION,
  CMD,
  decodeGreeting,
  decodeInfoExport,
  decodeOptionReplyHeader,
  encodeClientFlags,
  encodeInfoRequest,
  encodeMetaContextRequest,
  encodeOption,
  encodeRequest,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  GREETING_BYTES,
  IHAVEOPT,
  INFO,
  infoType,
  isErrorReply,
  NBDMAGIC,
  OPT,
  OPTION_REPLY_HEADER_BYTES,
  OPTION_REPLY_MAGIC,
  REP,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from '@backy/nbd-protocol';
import { SocketReader } from './socket-reader.js';

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface ReplyChunk {
  flags: number;
  type: number;
  handle: bigint;
  payload: Buffer;
}

export class TestClient {
  readonly socket: Socket;
  readonly reader: SocketReader;
  handshakeFlags = 0;
  size = 0;
  transmissionFlags = 0;
  private nextHandle = 1n;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.reader = new SocketReader(socket);
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<TestClient> {
    const socket = connect({ port, host });
    socket.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new TestClient(socket);
    const greeting = decodeGreeting(await client.reader.read(GREETING_BYTES));
    if (greeting.magic !== NBDMAGIC || greeting.optionMagic !== IHAVEOPT) throw new Error('bad greeting');
    client.handshakeFlags = greeting.flags;
    socket.write(encodeClientFlags(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES));
    return client;
  }

  sendOption(option: number, data?: Buffer): void {
    this.socket.write(encodeOption(option, data));
  }

  async readOptionReply(): Promise<OptionReply> {
    const h = decodeOptionReplyHeader(await this.reader.read(OPTION_REPLY_HEADER_BYTES));
    if (h.magic !== OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
    return { option: h.option, type: h.type, data: await this.reader.read(h.length) };
  }

  /** Sends an option and collects replies up to the final one (ACK or an error). */
  async option(option: number, data?: Buffer): Promise<OptionReply[]> {
    this.sendOption(option, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const r = await this.readOptionReply();
      replies.push(r);
      if (r.type === REP.ACK || isErrorReply(r.type)) return replies;
    }
  }

  /** NBD_OPT_GO; on success records size and flags and returns the replies. */
  async go(
    name: string,
    options: { structured?: boolean; allocation?: boolean } = {},
  ): Promise<OptionReply[]> {
    if (options.structured) await this.option(OPT.STRUCTURED_REPLY);
    if (options.allocation)
      await this.option(OPT.SET_META_CONTEXT, encodeMetaContextRequest({ name, queries: [BASE_ALLOCATION] }));
    const replies = await this.option(OPT.GO, encodeInfoRequest({ name, requests: [] }));
    const info = replies.find((r) => r.type === REP.INFO && infoType(r.data) === INFO.EXPORT);
    if (info) ({ size: this.size, flags: this.transmissionFlags } = decodeInfoExport(info.data));
    return replies;
  }

  request(type: number, offset: number, length: number, flags = 0, payload?: Buffer): bigint {
    const handle = this.nextHandle++;
    const h = Buffer.alloc(8);
    h.writeBigUInt64BE(handle);
    this.socket.write(encodeRequest({ flags, type, handle: h, offset, length }));
    if (payload) this.socket.write(payload);
    return handle;
  }

  /** Reads one reply message: a simple reply (with `dataLength` bytes if error is 0) or one structured chunk. */
  async readReply(
    dataLength = 0,
  ): Promise<
    { simple: true; error: number; handle: bigint; data: Buffer } | ({ simple: false } & ReplyChunk)
  > {
    const magic = (await this.reader.read(4)).readUInt32BE(0);
    if (magic === SIMPLE_REPLY_MAGIC) {
      const rest = await this.reader.read(12);
      const error = rest.readUInt32BE(0);
      return {
        simple: true,
        error,
        handle: rest.readBigUInt64BE(4),
        data: error === 0 ? await this.reader.read(dataLength) : Buffer.alloc(0),
      };
    }
    if (magic === STRUCTURED_REPLY_MAGIC) {
      const rest = await this.reader.read(16);
      const length = rest.readUInt32BE(12);
      return {
        simple: false,
        flags: rest.readUInt16BE(0),
        type: rest.readUInt16BE(2),
        handle: rest.readBigUInt64BE(4),
        payload: await this.reader.read(length),
      };
    }
    throw new Error(`bad reply magic 0x${magic.toString(16)}`);
  }

  /** Reads all structured chunks of one reply (until DONE); assumes no other request is in flight. */
  async readStructured(): Promise<ReplyChunk[]> {
    const chunks: ReplyChunk[] = [];
    for (;;) {
      const r = await this.readReply();
      if (r.simple) throw new Error('expected a structured reply');
      chunks.push(r);
      if ((r.flags & REPLY_FLAG_DONE) !== 0) return chunks;
    }
  }

  /** Structured read of a range, reassembled; throws with the error value on an error chunk. */
  async read(offset: number, length: number, flags = 0): Promise<Buffer> {
    this.request(CMD.READ, offset, length, flags);
    const out = Buffer.alloc(length);
    for (const c of await this.readStructured()) {
      if (c.type === REPLY_TYPE.OFFSET_DATA)
        c.payload.copy(out, Number(c.payload.readBigUInt64BE(0)) - offset, 8);
      else if (c.type === REPLY_TYPE.OFFSET_HOLE) continue;
      else if (c.type === REPLY_TYPE.NONE) continue;
      else if ((c.type & 0x8000) !== 0)
        throw Object.assign(new Error('NBD error'), { errno: c.payload.readUInt32BE(0) });
    }
    return out;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The error value of a structured error chunk. */
export function errorOf(chunk: ReplyChunk): number {
  return chunk.payload.readUInt32BE(0);
}
