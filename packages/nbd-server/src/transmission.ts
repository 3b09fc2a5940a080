import { isBackyError } from '@backy/core';
import {
  CMD,
  CMD_FLAG,
  commandName,
  decodeRequest,
  encodeBlockStatus,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeSimpleReply,
  encodeStructuredError,
  encodeStructuredNone,
  NBD_ERR,
  ProtocolViolation,
  REPLY_FLAG_DONE,
  REQUEST_BYTES,
  REQUEST_MAGIC,
  type Request,
} from '@backy/nbd-protocol';
import type { Logger } from 'pino';
import type { ExportImage } from './image.js';
import { ConnectionClosed, type SocketReader } from './socket-reader.js';
import type { SocketWriter } from './socket-writer.js';
import { ALLOCATION_CONTEXT_ID, type Negotiated, type ServerSettings } from './types.js';

/** Write payloads above the maximum but below this are read and refused; larger ones end the connection. */
const MAX_SKIPPED_WRITE_BYTES = 64 * 1024 * 1024;

/** An error for one request, sent to the client as an NBD error value. */
class RequestError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The transmission phase of one connection: reads requests and answers them, several at once (bounded by
 * count and bytes), until the client disconnects.
 */
export class Transmission {
  private readonly inflight = new Set<Promise<void>>();
  private inflightBytes = 0;
  private readonly image: ExportImage;
  private readonly structured: boolean;
  private readonly blockStatus: boolean;
  readonly stats = { requests: 0, bytesRead: 0, bytesWritten: 0 };

  constructor(
    private readonly reader: SocketReader,
    private readonly writer: SocketWriter,
    negotiated: Negotiated,
    private readonly settings: ServerSettings,
    private readonly log: Logger,
    /** True once the server is shutting down: new requests then get ESHUTDOWN. */
    private readonly stopping: () => boolean,
  ) {
    this.image = negotiated.image;
    this.structured = negotiated.structured;
    this.blockStatus = negotiated.blockStatus;
  }

  /** Resolves once every request in progress now is answered. */
  async settled(): Promise<void> {
    await Promise.allSettled(this.inflight);
  }

  /** The command loop; resolves when the client sends NBD_CMD_DISC. */
  async run(): Promise<void> {
    for (;;) {
      while (this.inflight.size >= this.settings.maxInflight) await Promise.race(this.inflight);
      const request = decodeRequest(await this.reader.read(REQUEST_BYTES));
      if (request.magic !== REQUEST_MAGIC)
        throw new ProtocolViolation(`bad request magic 0x${request.magic.toString(16)}`);
      this.stats.requests++;
      if (request.type === CMD.DISC) {
        await this.settled();
        this.writer.end();
        return;
      }
      // Bound the data held for this client: a client that stops reading replies stops being read.
      const weight =
        request.type === CMD.READ || request.type === CMD.WRITE
          ? Math.min(request.length, this.settings.maxRequestBytes)
          : 0;
      while (this.inflight.size > 0 && this.inflightBytes + weight > this.settings.maxInflightBytes) {
        await Promise.race(this.inflight);
      }
      let payload: Buffer | null = null;
      if (request.type === CMD.WRITE) {
        const refusal = this.checkWrite(request);
        if (refusal != null) {
          if (request.length > MAX_SKIPPED_WRITE_BYTES) {
            throw new ProtocolViolation(
              `write of ${request.length} bytes (limit ${this.settings.maxRequestBytes})`,
            );
          }
          await this.reader.skip(request.length);
          this.track(Promise.resolve().then(() => this.sendError(request, refusal)));
          continue;
        }
        payload = await this.reader.read(request.length);
      }
      this.track(this.handle(request, payload), weight);
    }
  }

  private track(task: Promise<void>, weight = 0): void {
    this.inflightBytes += weight;
    const tracked = task
      .catch((error) => {
        if (!(error instanceof ConnectionClosed)) this.log.error({ err: error }, 'NBD request failed');
      })
      .finally(() => {
        this.inflightBytes -= weight;
        this.inflight.delete(tracked);
      });
    this.inflight.add(tracked);
  }

  private checkWrite(request: Request): RequestError | null {
    if (!this.settings.cow) return new RequestError(NBD_ERR.EPERM, 'the export is read-only');
    if (request.length > this.settings.maxRequestBytes) {
      return new RequestError(
        NBD_ERR.EINVAL,
        `write of ${request.length} bytes exceeds the maximum of ${this.settings.maxRequestBytes}`,
      );
    }
    if ((request.flags & ~CMD_FLAG.FUA) !== 0)
      return new RequestError(NBD_ERR.EINVAL, 'unsupported command flags');
    if (request.offset + request.length > this.image.size) {
      return new RequestError(NBD_ERR.ENOSPC, 'write beyond the end of the export');
    }
    return null;
  }

  private async handle(request: Request, payload: Buffer | null): Promise<void> {
    try {
      if (this.stopping()) throw new RequestError(NBD_ERR.ESHUTDOWN, 'the server is shutting down');
      const image = this.image;
      switch (request.type) {
        case CMD.READ:
          await this.handleRead(request, image);
          return;
        case CMD.WRITE:
          await image.write(request.offset, payload!);
          this.stats.bytesWritten += payload!.length;
          await this.sendOk(request);
          return;
        case CMD.FLUSH:
          // Nothing to make durable: the export is read-only, or its overlay is discarded at disconnect.
          await this.sendOk(request);
          return;
        case CMD.TRIM:
        case CMD.WRITE_ZEROES: {
          if (!this.settings.cow) throw new RequestError(NBD_ERR.EPERM, 'the export is read-only');
          const allowed = request.type === CMD.WRITE_ZEROES ? CMD_FLAG.FUA | CMD_FLAG.NO_HOLE : CMD_FLAG.FUA;
          if ((request.flags & ~allowed) !== 0)
            throw new RequestError(NBD_ERR.EINVAL, 'unsupported command flags');
          if (request.offset + request.length > image.size) {
            throw new RequestError(
              NBD_ERR.ENOSPC,
              `${commandName(request.type)} beyond the end of the export`,
            );
          }
          await image.zero(request.offset, request.length);
          await this.sendOk(request);
          return;
        }
        case CMD.BLOCK_STATUS: {
          if (!this.blockStatus) throw new RequestError(NBD_ERR.EINVAL, 'no metadata context was negotiated');
          if ((request.flags & ~CMD_FLAG.REQ_ONE) !== 0)
            throw new RequestError(NBD_ERR.EINVAL, 'unsupported command flags');
          if (request.length === 0 || request.offset + request.length > image.size) {
            throw new RequestError(NBD_ERR.EINVAL, 'block status range outside the export');
          }
          const extents = image.blockStatus(
            request.offset,
            request.length,
            (request.flags & CMD_FLAG.REQ_ONE) !== 0,
          );
          await this.writer.send(
            encodeBlockStatus(request.handle, REPLY_FLAG_DONE, ALLOCATION_CONTEXT_ID, extents),
          );
          return;
        }
        default:
          throw new RequestError(NBD_ERR.EINVAL, `${commandName(request.type)} is not supported`);
      }
    } catch (error) {
      if (error instanceof ConnectionClosed) throw error;
      if (error instanceof RequestError) {
        this.log.debug(
          {
            command: commandName(request.type),
            offset: request.offset,
            length: request.length,
            reason: error.message,
          },
          'request refused',
        );
        await this.sendError(request, error);
        return;
      }
      this.log.error(
        { err: error, command: commandName(request.type), offset: request.offset, length: request.length },
        'NBD request failed',
      );
      const errno =
        isBackyError(error, 'NO_SPACE') || (error as NodeJS.ErrnoException).code === 'ENOSPC'
          ? NBD_ERR.ENOSPC
          : NBD_ERR.EIO;
      await this.sendError(request, new RequestError(errno, (error as Error).message));
    }
  }

  private async handleRead(request: Request, image: ExportImage): Promise<void> {
    const { offset, length, handle } = request;
    const df = (request.flags & CMD_FLAG.DF) !== 0;
    if ((request.flags & ~(CMD_FLAG.FUA | CMD_FLAG.DF)) !== 0 || (df && !this.structured)) {
      throw new RequestError(NBD_ERR.EINVAL, 'unsupported command flags');
    }
    if (length > this.settings.maxRequestBytes) {
      throw new RequestError(
        df ? NBD_ERR.EOVERFLOW : NBD_ERR.EINVAL,
        `read of ${length} bytes exceeds the maximum of ${this.settings.maxRequestBytes}`,
      );
    }
    if (offset + length > image.size)
      throw new RequestError(NBD_ERR.EINVAL, 'read beyond the end of the export');
    this.stats.bytesRead += length;
    if (length === 0) {
      await this.writer.send(this.structured ? encodeStructuredNone(handle) : encodeSimpleReply(handle, 0));
      return;
    }
    if (!this.structured || df) {
      // One payload: assemble the whole range first, so an error can still be reported instead of data.
      const pieces: { offset: number; data: Buffer | null; length: number }[] = [];
      for await (const piece of image.read(offset, length)) pieces.push(piece);
      if (df && pieces.length === 1 && pieces[0]!.data == null) {
        await this.writer.send(encodeOffsetHole(handle, REPLY_FLAG_DONE, offset, length));
        return;
      }
      const buffers = pieces.map((p) => p.data ?? Buffer.alloc(p.length));
      const header = this.structured
        ? encodeOffsetDataHeader(handle, REPLY_FLAG_DONE, offset, length)
        : encodeSimpleReply(handle, 0);
      await this.writer.send(header, ...buffers);
      return;
    }
    // Structured: one content chunk per piece; the last carries DONE once all data is in hand.
    let previous: { offset: number; length: number; data: Buffer | null } | null = null;
    const sendPiece = (p: { offset: number; length: number; data: Buffer | null }, flags: number) =>
      p.data == null
        ? this.writer.send(encodeOffsetHole(handle, flags, p.offset, p.length))
        : this.writer.send(encodeOffsetDataHeader(handle, flags, p.offset, p.length), p.data);
    try {
      for await (const piece of image.read(offset, length)) {
        if (previous) await sendPiece(previous, 0);
        previous = piece;
      }
    } catch (error) {
      if (error instanceof ConnectionClosed) throw error;
      this.log.error({ err: error, offset, length }, 'reading the revision failed');
      await this.writer.send(encodeStructuredError(handle, NBD_ERR.EIO, (error as Error).message));
      return;
    }
    await sendPiece(previous!, REPLY_FLAG_DONE);
  }

  private sendOk(request: Request): Promise<void> {
    return this.writer.send(encodeSimpleReply(request.handle, 0));
  }

  private async sendError(request: Request, error: RequestError): Promise<void> {
    await this.writer.send(
      this.structured
        ? encodeStructuredError(request.handle, error.errno, error.message)
        : encodeSimpleReply(request.handle, error.errno),
    );
  }
}
