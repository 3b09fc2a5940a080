/**
 * The client's side of the fixed newstyle handshake (the NBD project's doc/proto.md): the greeting,
 * structured replies, the meta contexts and NBD_OPT_GO. `NbdClient.connect` runs these in order.
 */
import type { Socket } from 'node:net';
import { BackyError } from '@backy/core/source';
import {
  decodeGreeting,
  decodeInfoBlockSize,
  decodeInfoExport,
  decodeMetaContextReply,
  decodeOptionReplyHeader,
  encodeClientFlags,
  encodeInfoRequest,
  encodeMetaContextRequest,
  encodeOption,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  GREETING_BYTES,
  IHAVEOPT,
  INFO,
  infoType,
  NBDMAGIC,
  OPT,
  OPTION_REPLY_HEADER_BYTES,
  OPTION_REPLY_MAGIC,
  optionName,
  REP,
  replyName,
} from '@backy/nbd-protocol';
import type { ByteQueue } from './byte-queue.js';

interface OptionReply {
  type: number;
  data: Buffer;
}

/** Options sent and their replies read, with errors that name the server (`where`) and the export. */
export class OptionChannel {
  constructor(
    private readonly socket: Socket,
    private readonly rx: ByteQueue,
    readonly where: string,
    readonly exportName: string,
  ) {}

  /** Reads the greeting and answers with our flags; throws unless the server speaks fixed newstyle. */
  async greet(): Promise<void> {
    const hello = decodeGreeting(await this.rx.read(GREETING_BYTES));
    if (hello.magic !== NBDMAGIC || hello.optionMagic !== IHAVEOPT)
      throw new BackyError('SOURCE_FAILED', `${this.where} is not a newstyle NBD server`);
    if ((hello.flags & FLAG_FIXED_NEWSTYLE) === 0)
      throw new BackyError(
        'SOURCE_FAILED',
        `NBD server ${this.where} does not speak the fixed newstyle handshake`,
      );
    const clientFlags = FLAG_C_FIXED_NEWSTYLE | (hello.flags & FLAG_NO_ZEROES ? FLAG_C_NO_ZEROES : 0);
    this.socket.write(encodeClientFlags(clientFlags));
  }

  send(opt: number, data: Buffer): void {
    this.socket.write(encodeOption(opt, data));
  }

  async reply(opt: number): Promise<OptionReply> {
    const { magic, option, type, length } = decodeOptionReplyHeader(
      await this.rx.read(OPTION_REPLY_HEADER_BYTES),
    );
    if (magic !== OPTION_REPLY_MAGIC || option !== opt)
      throw new BackyError(
        'SOURCE_FAILED',
        `NBD server ${this.where} sent a malformed reply to ${optionName(opt)}`,
      );
    const data = length > 0 ? Buffer.from(await this.rx.read(length)) : Buffer.alloc(0);
    return { type, data };
  }

  /** The error for a reply to `opt` that is neither its data nor ACK. */
  failure(opt: number, reply: OptionReply): BackyError {
    if (reply.type === REP.ERR_UNKNOWN)
      return new BackyError(
        'SOURCE_UNAVAILABLE',
        `NBD server ${this.where} has no export ${JSON.stringify(this.exportName)}`,
      );
    const text = reply.data.toString('utf8').trim();
    return new BackyError(
      'SOURCE_FAILED',
      `NBD server ${this.where}: ${optionName(opt)} failed (${replyName(reply.type)}${text === '' ? '' : `: ${text}`})`,
    );
  }

  /** NBD_OPT_STRUCTURED_REPLY, which backy needs. */
  async requireStructuredReplies(): Promise<void> {
    this.send(OPT.STRUCTURED_REPLY, Buffer.alloc(0));
    const structured = await this.reply(OPT.STRUCTURED_REPLY);
    if (structured.type !== REP.ACK)
      throw new BackyError(
        'SOURCE_FAILED',
        `NBD server ${this.where} does not support structured replies, which backy needs to skip holes and ask for block status`,
      );
  }

  /** NBD_OPT_SET_META_CONTEXT for `wanted`: the contexts the server agreed to, by name (none when it has none). */
  async setMetaContexts(wanted: readonly string[]): Promise<Map<string, number>> {
    const contexts = new Map<string, number>();
    if (wanted.length === 0) return contexts;
    this.send(
      OPT.SET_META_CONTEXT,
      encodeMetaContextRequest({ name: this.exportName, queries: [...wanted] }),
    );
    for (;;) {
      const reply = await this.reply(OPT.SET_META_CONTEXT);
      if (reply.type === REP.META_CONTEXT) {
        const context = decodeMetaContextReply(reply.data);
        contexts.set(context.name, context.id);
      } else if (reply.type === REP.ACK || reply.type === REP.ERR_UNSUP) {
        // ERR_UNSUP: no meta contexts at all; the caller sees none negotiated.
        return contexts;
      } else {
        throw this.failure(OPT.SET_META_CONTEXT, reply);
      }
    }
  }

  /** NBD_OPT_GO: the export's size, transmission flags and largest request. */
  async go(): Promise<{ size: number; flags: number; maxRequest: number }> {
    this.send(OPT.GO, encodeInfoRequest({ name: this.exportName, requests: [INFO.BLOCK_SIZE] }));
    let size: number | null = null;
    let flags = 0;
    let maxRequest = 32 * 1024 * 1024;
    for (;;) {
      const reply = await this.reply(OPT.GO);
      if (reply.type === REP.INFO) {
        const info = infoType(reply.data);
        if (info === INFO.EXPORT) {
          ({ size, flags } = decodeInfoExport(reply.data));
        } else if (info === INFO.BLOCK_SIZE) {
          maxRequest = Math.min(maxRequest, decodeInfoBlockSize(reply.data).maximum);
        }
      } else if (reply.type === REP.ACK) {
        break;
      } else {
        throw this.failure(OPT.GO, reply);
      }
    }
    if (size == null)
      throw new BackyError('SOURCE_FAILED', `NBD server ${this.where} did not send the export's size`);
    return { size, flags, maxRequest };
  }
}
