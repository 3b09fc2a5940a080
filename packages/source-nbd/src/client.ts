/**
 * A small NBD client: fixed newstyle handshake, NBD_OPT_GO, structured replies, meta contexts and
 * block status, pipelined reads. After the NBD project's doc/proto.md; the constants, encoders and
 * decoders are the ones backy's own server uses (`@backy/nbd-protocol`).
 */
import { connect, type Socket } from 'node:net';
import { BackyError } from '@backy/core/source';
import {
  CMD,
  encodeRequest,
  errorName,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from '@backy/nbd-protocol';
import { describeAddress, type NbdAddress } from './address.js';
import { ByteQueue } from './byte-queue.js';
import { OptionChannel } from './client-handshake.js';

/** One extent of a block status reply. */
export interface Extent {
  offset: number;
  length: number;
  flags: number;
}

/** The result of a read: the bytes (holes zero-filled) and how many came over the wire as data. */
export interface ReadResult {
  data: Buffer;
  dataBytes: number;
}

export interface NbdConnectOptions {
  /** Meta contexts to negotiate, e.g. `base:allocation`, `qemu:dirty-bitmap:b0`. */
  metaContexts?: string[];
  signal?: AbortSignal;
  /** Milliseconds to wait for the connection and the handshake (default 30 s). */
  timeoutMs?: number;
}

interface Pending {
  type: number;
  offset: number;
  length: number;
  /** For reads: the destination, and which of its bytes replies have covered. */
  target?: Buffer;
  covered: number;
  dataBytes: number;
  extents: Map<number, Extent[]>;
  error: { code: number; message: string } | null;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** An NBD error code and the message the server sent with it. */
export class NbdCommandError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** A connected NBD client in the transmission phase. */
export class NbdClient {
  private readonly pending = new Map<bigint, Pending>();
  private nextHandle = 1n;
  private closed = false;
  private failure: Error | null = null;

  private constructor(
    private readonly socket: Socket,
    private readonly rx: ByteQueue,
    readonly address: NbdAddress,
    /** Export size in bytes. */
    readonly size: number,
    readonly transmissionFlags: number,
    /** Negotiated meta contexts by name → id. */
    readonly contexts: ReadonlyMap<string, number>,
    /** Largest request payload the server accepts (NBD_INFO_BLOCK_SIZE, default 32 MiB). */
    readonly maxRequest: number,
  ) {
    void this.receive();
  }

  /** Connects, negotiates structured replies, the meta contexts, and the export (NBD_OPT_GO). */
  static async connect(address: NbdAddress, options: NbdConnectOptions = {}): Promise<NbdClient> {
    const where = describeAddress(address);
    const rx = new ByteQueue();
    const socket =
      address.transport === 'tcp'
        ? connect({ host: address.host, port: address.port })
        : connect({ path: address.socket });
    socket.setNoDelay?.(true);
    socket.on('data', (piece: Buffer) => rx.push(piece));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      rx.fail(
        new BackyError(
          'SOURCE_UNAVAILABLE',
          `NBD server ${where}: ${error.code === 'ECONNREFUSED' ? 'connection refused' : error.code === 'ENOENT' ? 'no such socket' : (error.code ?? error.message)}`,
          { cause: error },
        ),
      ),
    );
    socket.on('close', () =>
      rx.fail(new BackyError('SOURCE_FAILED', `NBD server ${where} closed the connection`)),
    );
    const timeout = setTimeout(
      () =>
        rx.fail(
          new BackyError(
            'SOURCE_UNAVAILABLE',
            `NBD server ${where}: no handshake within ${(options.timeoutMs ?? 30_000) / 1000} s`,
          ),
        ),
      options.timeoutMs ?? 30_000,
    );
    const onAbort = () => rx.fail(new BackyError('ABORTED', 'aborted'));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const channel = new OptionChannel(socket, rx, where, address.exportName);
      await channel.greet();
      await channel.requireStructuredReplies();
      const contexts = await channel.setMetaContexts(options.metaContexts ?? []);
      const { size, flags, maxRequest } = await channel.go();
      return new NbdClient(socket, rx, address, size, flags, contexts, maxRequest);
    } catch (error) {
      socket.destroy();
      throw error;
    } finally {
      clearTimeout(timeout);
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** The id of a negotiated meta context, or null when the server did not agree to it. */
  contextId(name: string): number | null {
    return this.contexts.get(name) ?? null;
  }

  /**
   * Reads `length` bytes at `offset` into `target` (allocated if not given). Holes the server reports
   * come back as zeros without crossing the wire. A reply that leaves bytes uncovered, or an EIO, is
   * retried (twice) before it fails.
   */
  async read(
    offset: number,
    length: number,
    target: Buffer = Buffer.allocUnsafe(length),
  ): Promise<ReadResult> {
    let dataBytes = 0;
    for (let start = 0; start < length; start += this.maxRequest) {
      const n = Math.min(this.maxRequest, length - start);
      const view = target.subarray(start, start + n);
      for (let attempt = 0; ; attempt++) {
        try {
          const p = await this.request(CMD.READ, offset + start, n, view);
          if (p.covered !== n) throw new NbdCommandError(5, `the reply covered ${p.covered} of ${n} bytes`);
          dataBytes += p.dataBytes;
          break;
        } catch (error) {
          if (!(error instanceof NbdCommandError) || error.code !== 5 || attempt >= 2)
            throw this.describe(error, `read of ${n} bytes at offset ${offset + start}`);
        }
      }
    }
    return { data: target, dataBytes };
  }

  /**
   * The extents of meta context `name` over [offset, offset+length), asking as often as the server's
   * replies need (a reply may cover less than asked for).
   */
  async extents(name: string, offset: number, length: number): Promise<Extent[]> {
    const id = this.contextId(name);
    if (id == null) throw new BackyError('SOURCE_FAILED', `meta context ${name} was not negotiated`);
    const out: Extent[] = [];
    const end = offset + length;
    let at = offset;
    while (at < end) {
      // A request length is 32 bits; stay well below and on a 1 MiB boundary.
      const n = Math.min(end - at, 0x40000000);
      let p: Pending;
      try {
        p = await this.request(CMD.BLOCK_STATUS, at, n);
      } catch (error) {
        throw this.describe(error, `block status of ${name} at offset ${at}`);
      }
      const list = p.extents.get(id) ?? [];
      if (list.length === 0)
        throw new BackyError(
          'SOURCE_FAILED',
          `NBD server ${describeAddress(this.address)} sent no extents for ${name} at offset ${at}`,
        );
      for (const e of list) {
        if (at >= end) break;
        const len = Math.min(e.length, end - at);
        if (len === 0)
          throw new BackyError(
            'SOURCE_FAILED',
            `NBD server sent an empty extent for ${name} at offset ${at}`,
          );
        const last = out.at(-1);
        if (last != null && last.flags === e.flags && last.offset + last.length === at) last.length += len;
        else out.push({ offset: at, length: len, flags: e.flags });
        at += len;
      }
    }
    return out;
  }

  /** Sends NBD_CMD_DISC and closes the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.failure == null && !this.socket.destroyed) {
      await new Promise<void>((done) => {
        this.socket.end(
          encodeRequest({ flags: 0, type: CMD.DISC, handle: Buffer.alloc(8), offset: 0, length: 0 }),
          () => done(),
        );
        setTimeout(done, 1000).unref();
      });
    }
    this.socket.destroy();
    this.fail(new BackyError('SOURCE_FAILED', 'NBD connection closed'));
  }

  private describe(error: unknown, what: string): Error {
    if (error instanceof BackyError) return error;
    const code = error instanceof NbdCommandError ? ` (${errorName(error.code) ?? error.code})` : '';
    return new BackyError(
      'SOURCE_FAILED',
      `NBD server ${describeAddress(this.address)}: ${what} failed${code}: ${(error as Error).message}`,
      { cause: error },
    );
  }

  private request(type: number, offset: number, length: number, target?: Buffer): Promise<Pending> {
    if (this.failure != null) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new BackyError('SOURCE_FAILED', 'NBD connection is closed'));
    const handle = this.nextHandle++;
    const handleBuffer = Buffer.alloc(8);
    handleBuffer.writeBigUInt64BE(handle);
    return new Promise<Pending>((resolve, reject) => {
      const p: Pending = {
        type,
        offset,
        length,
        target,
        covered: 0,
        dataBytes: 0,
        extents: new Map(),
        error: null,
        resolve: () =>
          p.error != null ? reject(new NbdCommandError(p.error.code, p.error.message)) : resolve(p),
        reject,
      };
      this.pending.set(handle, p);
      this.socket.write(encodeRequest({ flags: 0, type, handle: handleBuffer, offset, length }));
    });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.rx.fail(error);
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }

  /** Reads replies for as long as the connection lives and hands each to its request. */
  private async receive(): Promise<void> {
    try {
      for (;;) {
        const head = await this.rx.read(4);
        const magic = head.readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) {
          const rest = await this.rx.read(12);
          const error = rest.readUInt32BE(0);
          const p = this.take(rest.readBigUInt64BE(4));
          if (error !== 0) p.error = { code: error, message: `error ${error}` };
          else if (p.type === CMD.READ && p.target != null) {
            await this.rx.readInto(p.target, 0, p.length);
            p.covered = p.length;
            p.dataBytes = p.length;
          }
          p.resolve();
        } else if (magic === STRUCTURED_REPLY_MAGIC) {
          const h = Buffer.from(await this.rx.read(16));
          const flags = h.readUInt16BE(0);
          const type = h.readUInt16BE(2);
          const handle = h.readBigUInt64BE(4);
          const length = h.readUInt32BE(12);
          const p = this.pending.get(handle);
          if (p == null) throw new BackyError('SOURCE_FAILED', `NBD server replied to an unknown request`);
          await this.structuredChunk(p, type, length);
          if (flags & REPLY_FLAG_DONE) {
            this.pending.delete(handle);
            p.resolve();
          }
        } else {
          throw new BackyError(
            'SOURCE_FAILED',
            `NBD server sent a reply with bad magic 0x${magic.toString(16)}`,
          );
        }
      }
    } catch (error) {
      this.fail(
        error instanceof BackyError
          ? error
          : new BackyError('SOURCE_FAILED', `NBD connection failed: ${(error as Error).message}`, {
              cause: error,
            }),
      );
    }
  }

  private take(handle: bigint): Pending {
    const p = this.pending.get(handle);
    if (p == null) throw new BackyError('SOURCE_FAILED', 'NBD server replied to an unknown request');
    this.pending.delete(handle);
    return p;
  }

  private async structuredChunk(p: Pending, type: number, length: number): Promise<void> {
    const inRange = (offset: number, n: number) => offset >= p.offset && offset + n <= p.offset + p.length;
    switch (type) {
      case REPLY_TYPE.NONE:
        if (length !== 0) await this.rx.read(length);
        return;
      case REPLY_TYPE.OFFSET_DATA: {
        const offset = Number((await this.rx.read(8)).readBigUInt64BE(0));
        const n = length - 8;
        if (p.target == null || !inRange(offset, n))
          throw new BackyError(
            'SOURCE_FAILED',
            `NBD server sent data outside the request (offset ${offset})`,
          );
        await this.rx.readInto(p.target, offset - p.offset, n);
        p.covered += n;
        p.dataBytes += n;
        return;
      }
      case REPLY_TYPE.OFFSET_HOLE: {
        const b = await this.rx.read(12);
        const offset = Number(b.readBigUInt64BE(0));
        const n = b.readUInt32BE(8);
        if (p.target == null || !inRange(offset, n))
          throw new BackyError(
            'SOURCE_FAILED',
            `NBD server sent a hole outside the request (offset ${offset})`,
          );
        p.target.fill(0, offset - p.offset, offset - p.offset + n);
        p.covered += n;
        return;
      }
      case REPLY_TYPE.BLOCK_STATUS: {
        const b = Buffer.from(await this.rx.read(length));
        const id = b.readUInt32BE(0);
        const list = p.extents.get(id) ?? [];
        let at = p.offset + list.reduce((n, e) => n + e.length, 0);
        for (let i = 4; i + 8 <= b.length; i += 8) {
          const n = b.readUInt32BE(i);
          list.push({ offset: at, length: n, flags: b.readUInt32BE(i + 4) });
          at += n;
        }
        p.extents.set(id, list);
        return;
      }
      default: {
        const b = Buffer.from(await this.rx.read(length));
        if (type & 0x8000) {
          const code = b.readUInt32BE(0);
          const n = b.readUInt16BE(4);
          const message = b.toString('utf8', 6, 6 + n);
          p.error ??= { code, message: message === '' ? (errorName(code) ?? `error ${code}`) : message };
        }
        // Other non-error chunk types are informational and may be ignored (proto.md).
      }
    }
  }
}
