import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { BackyError, isBackyError } from '../errors.js';
import type { NbdExportInfo, NbdExportProvider, OpenedExport } from './exports.js';
import { ExportImage } from './image.js';
import {
  BASE_ALLOCATION,
  CMD,
  CMD_FLAG,
  commandName,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  decodeRequest,
  encodeBlockStatus,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContextReply,
  encodeOffsetDataHeader,
  encodeOffsetHole,
  encodeOptionReply,
  encodeServerReply,
  encodeSimpleReply,
  encodeStructuredError,
  encodeStructuredNone,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  MAX_STRING,
  NBD_ERR,
  OPT,
  OptionSyntaxError,
  optionName,
  REP,
  REPLY_FLAG_DONE,
  REQUEST_BYTES,
  REQUEST_MAGIC,
  type Request,
  TF,
} from './protocol.js';
import { ConnectionClosed, SocketReader } from './socket-reader.js';

export interface NbdServerOptions {
  exports: NbdExportProvider;
  logger: Logger;
  /** Aborting closes the server like `close()`. */
  signal?: AbortSignal;
  /** Accept writes into a per-connection copy-on-write overlay, discarded at disconnect (default false: read-only). */
  cow?: boolean;
  /** Directory for the copy-on-write overlay files (default: the OS temp directory). */
  overlayDir?: string;
  /** Largest NBD_CMD_READ/NBD_CMD_WRITE accepted, advertised as the maximum block size (default 32 MiB). */
  maxRequestBytes?: number;
  /** Chunks each connection keeps in its LRU cache (default 8). */
  cacheChunks?: number;
  /** Requests one connection may have in progress at once (default 16). */
  maxInflight?: number;
  /** Bytes of reads and writes one connection may have in progress at once (default 64 MiB). */
  maxInflightBytes?: number;
  /** Clients served at once; more are refused (default 64). */
  maxConnections?: number;
  /** A client that has not entered transmission within this many ms is dropped (default 30000). */
  handshakeTimeoutMs?: number;
  /**
   * On close, how long a client may take to disconnect after its running requests are answered; new
   * requests meanwhile get ESHUTDOWN, which tells a client to disconnect (default 2000 ms).
   */
  shutdownGraceMs?: number;
}

const DEFAULT_MAX_REQUEST = 32 * 1024 * 1024;
/** Option data beyond this is skipped and refused with NBD_REP_ERR_TOO_BIG; far beyond it, dropped. */
const MAX_OPTION_BYTES = 64 * 1024;
const MAX_SKIPPED_OPTION_BYTES = 16 * 1024 * 1024;
/** Write payloads above the maximum but below this are read and refused; larger ones end the connection. */
const MAX_SKIPPED_WRITE_BYTES = 64 * 1024 * 1024;
const ALLOCATION_CONTEXT_ID = 1;

/** A violation of the protocol that ends the connection (a "hard disconnect"). */
class ProtocolViolation extends Error {}

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
 * Serves revisions over the NBD protocol (fixed newstyle handshake). Export names are resolved by the
 * export provider when a client asks; the server never prints and never exits the process.
 */
export class NbdServer {
  private readonly server: Server;
  private readonly connections = new Map<Connection, Promise<void>>();
  private nextId = 1;
  private closing: Promise<void> | null = null;
  private readonly onClosed: (() => void)[] = [];
  readonly options: Required<Omit<NbdServerOptions, 'signal' | 'overlayDir'>> & { overlayDir?: string };

  constructor(options: NbdServerOptions) {
    this.options = {
      exports: options.exports,
      logger: options.logger,
      cow: options.cow ?? false,
      overlayDir: options.overlayDir,
      maxRequestBytes: options.maxRequestBytes ?? DEFAULT_MAX_REQUEST,
      cacheChunks: options.cacheChunks ?? 8,
      maxInflight: options.maxInflight ?? 16,
      maxInflightBytes: options.maxInflightBytes ?? 64 * 1024 * 1024,
      maxConnections: options.maxConnections ?? 64,
      shutdownGraceMs: options.shutdownGraceMs ?? 2000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
    };
    this.server = createServer((socket) => this.accept(socket));
    options.signal?.addEventListener('abort', () => void this.close(), { once: true });
    if (options.signal?.aborted) void this.close();
  }

  /** Starts listening (default 127.0.0.1:10809); resolves with the bound address. */
  listen(port = 10809, host = '127.0.0.1'): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException) => {
        const why = error.code === 'EADDRINUSE' ? 'address already in use' : (error.code ?? error.message);
        reject(new BackyError('IO', `NBD server cannot listen on ${host}:${port}: ${why}`, { cause: error }));
      };
      this.server.once('error', onError);
      this.server.listen({ port, host }, () => {
        this.server.off('error', onError);
        const address = this.server.address() as AddressInfo;
        this.options.logger.info(
          { address: address.address, port: address.port, cow: this.options.cow },
          'NBD server listening',
        );
        resolve(address);
      });
    });
  }

  get address(): AddressInfo | null {
    return (this.server.address() as AddressInfo | null) ?? null;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Resolves once the server is closed (by `close()` or the abort signal) and its clients are gone. */
  closed(): Promise<void> {
    return new Promise((resolve) => {
      if (this.closing) void this.closing.then(resolve);
      else this.onClosed.push(resolve);
    });
  }

  /**
   * Stops accepting clients, lets every connection finish the requests it has in progress (answering new
   * ones with ESHUTDOWN), then closes them.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      await Promise.allSettled([...this.connections.keys()].map((c) => c.shutdown()));
      await Promise.allSettled([...this.connections.values()]);
      await stopped;
      this.options.logger.info('NBD server stopped');
    })();
    for (const resolve of this.onClosed.splice(0)) void this.closing.then(resolve);
    return this.closing;
  }

  private accept(socket: Socket): void {
    const log = this.options.logger.child({ client: `${socket.remoteAddress}:${socket.remotePort}` });
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= this.options.maxConnections) {
      log.warn({ limit: this.options.maxConnections }, 'too many NBD clients; connection refused');
      socket.destroy();
      return;
    }
    const connection = new Connection(socket, this.options, log.child({ conn: this.nextId++ }));
    this.connections.set(
      connection,
      connection.run().finally(() => this.connections.delete(connection)),
    );
  }
}

interface Negotiated {
  opened: OpenedExport;
  requestedName: string;
}

class Connection {
  private readonly reader: SocketReader;
  private structured = false;
  private noZeroes = false;
  /** The export name the last NBD_OPT_SET_META_CONTEXT selected base:allocation for, if any. */
  private allocationFor: string | null = null;
  private blockStatus = false;
  private image: ExportImage | null = null;
  private opened: OpenedExport | null = null;
  private readonly inflight = new Set<Promise<void>>();
  private inflightBytes = 0;
  private stopping = false;
  private drain: Promise<void> | null = null;
  private readonly stats = { requests: 0, bytesRead: 0, bytesWritten: 0 };

  constructor(
    private readonly socket: Socket,
    private readonly options: NbdServer['options'],
    private readonly log: Logger,
  ) {
    socket.setNoDelay(true);
    this.reader = new SocketReader(socket);
    // Errors surface through the reader and failed writes; this keeps them from being unhandled.
    socket.on('error', (error) => this.log.debug({ err: error }, 'socket error'));
  }

  async run(): Promise<void> {
    this.log.debug('client connected');
    // A client that never finishes the handshake would hold a connection slot forever.
    const handshakeTimer = setTimeout(() => {
      this.log.warn(
        { timeoutMs: this.options.handshakeTimeoutMs },
        'NBD handshake timed out; connection dropped',
      );
      this.socket.destroy();
    }, this.options.handshakeTimeoutMs);
    try {
      this.write(encodeGreeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
      const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
      if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) !== 0) {
        throw new ProtocolViolation(`unknown client flags 0x${clientFlags.toString(16)}`);
      }
      this.noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;
      const negotiated = await this.negotiate();
      clearTimeout(handshakeTimer);
      if (negotiated == null) return;
      await this.transmit();
    } catch (error) {
      if (error instanceof ConnectionClosed) this.log.debug({ reason: error.message }, 'client went away');
      else if (error instanceof ProtocolViolation)
        this.log.warn({ reason: error.message }, 'NBD protocol violation; connection dropped');
      else this.log.error({ err: error }, 'NBD connection failed');
    } finally {
      clearTimeout(handshakeTimer);
      await Promise.allSettled(this.inflight);
      this.socket.destroy();
      await this.image?.close();
      await this.opened
        ?.release()
        .catch((error) => this.log.warn({ err: error }, 'releasing the export failed'));
      if (this.opened) {
        this.log.info({ export: this.opened.name, ...this.stats }, 'NBD client disconnected');
      }
    }
  }

  /** Called by the server on shutdown. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled(this.inflight);
    if (!this.socket.destroyed) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.socket.once('close', () => resolve());
        timer = setTimeout(resolve, this.options.shutdownGraceMs);
      });
      clearTimeout(timer);
    }
    this.socket.destroy();
  }

  // ---- handshake -------------------------------------------------------------------------------------

  private async negotiate(): Promise<Negotiated | null> {
    for (;;) {
      const header = decodeOptionHeader(await this.reader.read(16));
      if (header.magic !== IHAVEOPT) throw new ProtocolViolation('bad option magic');
      const { option, length } = header;
      if (length > MAX_OPTION_BYTES) {
        if (length > MAX_SKIPPED_OPTION_BYTES) throw new ProtocolViolation(`option of ${length} bytes`);
        await this.reader.skip(length);
        this.replyError(option, REP.ERR_TOO_BIG, `option data of ${length} bytes is too large`);
        continue;
      }
      const data = await this.reader.read(length);
      this.log.debug({ option: optionName(option), length }, 'option');
      if (this.stopping && option !== OPT.ABORT) {
        if (option === OPT.EXPORT_NAME) throw new ConnectionClosed('server shutting down');
        this.replyError(option, REP.ERR_SHUTDOWN, 'the server is shutting down');
        continue;
      }
      try {
        switch (option) {
          case OPT.EXPORT_NAME: {
            if (length > MAX_STRING) throw new ProtocolViolation('export name too long');
            const name = data.toString('utf8');
            // This option cannot report an error: an unknown name ends the session.
            const opened = await this.openExport(name).catch((error) => {
              this.log.info(
                { export: name, reason: (error as Error).message },
                'unknown export requested; closing',
              );
              return null;
            });
            if (opened == null) return null;
            this.write(encodeExportNameReply(opened.size, this.transmissionFlags(), this.noZeroes));
            return { opened, requestedName: name };
          }
          case OPT.ABORT:
            this.reply(option, REP.ACK);
            this.socket.end();
            return null;
          case OPT.LIST: {
            if (length !== 0) throw new OptionSyntaxError('NBD_OPT_LIST takes no data');
            let exports: NbdExportInfo[];
            try {
              exports = await this.options.exports.list();
            } catch (error) {
              this.log.warn({ err: error }, 'listing exports failed');
              this.replyError(option, REP.ERR_POLICY, `cannot list revisions: ${(error as Error).message}`);
              break;
            }
            for (const e of exports) this.reply(option, REP.SERVER, encodeServerReply(e.name, e.description));
            this.reply(option, REP.ACK);
            break;
          }
          case OPT.STRUCTURED_REPLY:
            if (length !== 0) throw new OptionSyntaxError('NBD_OPT_STRUCTURED_REPLY takes no data');
            this.structured = true;
            this.reply(option, REP.ACK);
            break;
          case OPT.INFO:
          case OPT.GO: {
            const request = decodeInfoRequest(data);
            const go = option === OPT.GO;
            let info: NbdExportInfo;
            let opened: OpenedExport | null = null;
            try {
              if (go) {
                opened = await this.openExport(request.name);
                info = opened;
              } else {
                info = await this.options.exports.describe(request.name);
              }
            } catch (error) {
              this.replyExportError(option, request.name, error);
              break;
            }
            this.reply(option, REP.INFO, encodeInfoExport(info.size, this.transmissionFlags()));
            if (request.requests.includes(INFO.NAME))
              this.reply(option, REP.INFO, encodeInfoString(INFO.NAME, info.name));
            if (request.requests.includes(INFO.DESCRIPTION)) {
              this.reply(option, REP.INFO, encodeInfoString(INFO.DESCRIPTION, info.description));
            }
            if (request.requests.includes(INFO.BLOCK_SIZE)) {
              this.reply(option, REP.INFO, encodeInfoBlockSize(1, 4096, this.options.maxRequestBytes));
            }
            this.reply(option, REP.ACK);
            if (go && opened) return { opened, requestedName: request.name };
            break;
          }
          case OPT.LIST_META_CONTEXT:
          case OPT.SET_META_CONTEXT: {
            if (!this.structured) {
              this.replyError(option, REP.ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
              break;
            }
            const set = option === OPT.SET_META_CONTEXT;
            const request = decodeMetaContextRequest(data);
            if (set) this.allocationFor = null;
            try {
              await this.options.exports.describe(request.name);
            } catch (error) {
              this.replyExportError(option, request.name, error);
              break;
            }
            const wanted = set
              ? request.queries.includes(BASE_ALLOCATION)
              : request.queries.length === 0 ||
                request.queries.some((q) => q === 'base:' || q === BASE_ALLOCATION);
            if (wanted) {
              this.reply(
                option,
                REP.META_CONTEXT,
                encodeMetaContextReply(set ? ALLOCATION_CONTEXT_ID : 0, BASE_ALLOCATION),
              );
              if (set) this.allocationFor = request.name;
            }
            this.reply(option, REP.ACK);
            break;
          }
          case OPT.STARTTLS:
            this.replyError(option, REP.ERR_POLICY, 'TLS is not supported by this server');
            break;
          default:
            this.replyError(option, REP.ERR_UNSUP, `${optionName(option)} is not supported`);
        }
      } catch (error) {
        if (error instanceof OptionSyntaxError) {
          this.replyError(option, REP.ERR_INVALID, `${optionName(option)}: ${error.message}`);
          continue;
        }
        throw error;
      }
    }
  }

  private async openExport(name: string): Promise<OpenedExport> {
    const opened = await this.options.exports.open(name);
    try {
      this.image = await ExportImage.open(opened.reader, {
        cacheChunks: this.options.cacheChunks,
        cow: this.options.cow,
        overlayDir: this.options.overlayDir,
      });
    } catch (error) {
      await opened.release().catch(() => {});
      throw error;
    }
    this.opened = opened;
    this.blockStatus = this.structured && this.allocationFor === name;
    this.log.info({ export: opened.name, requested: name, cow: this.options.cow }, 'NBD client attached');
    return opened;
  }

  private replyExportError(option: number, name: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    if (isBackyError(error, 'REVISION_NOT_FOUND') || isBackyError(error, 'REVISION_AMBIGUOUS')) {
      this.log.info({ export: name, reason: message }, 'unknown export requested');
      this.replyError(option, REP.ERR_UNKNOWN, message);
    } else if (isBackyError(error, 'LOCKED')) {
      this.replyError(option, REP.ERR_POLICY, message);
    } else {
      this.log.warn({ export: name, err: error }, 'opening export failed');
      this.replyError(option, REP.ERR_UNKNOWN, `cannot open ${JSON.stringify(name)}: ${message}`);
    }
  }

  private transmissionFlags(): number {
    let flags = TF.HAS_FLAGS;
    if (this.options.cow) flags |= TF.SEND_FLUSH | TF.SEND_TRIM | TF.SEND_WRITE_ZEROES;
    // Read-only exports have no cache to keep coherent, so clients may spread requests over connections.
    else flags |= TF.READ_ONLY | TF.CAN_MULTI_CONN;
    if (this.structured) flags |= TF.SEND_DF;
    return flags;
  }

  private reply(option: number, type: number, data?: Buffer): void {
    this.write(encodeOptionReply(option, type, data));
  }

  private replyError(option: number, type: number, message: string): void {
    this.write(encodeOptionReply(option, type, Buffer.from(message.slice(0, MAX_STRING), 'utf8')));
  }

  // ---- transmission ----------------------------------------------------------------------------------

  private async transmit(): Promise<void> {
    for (;;) {
      while (this.inflight.size >= this.options.maxInflight) await Promise.race(this.inflight);
      const request = decodeRequest(await this.reader.read(REQUEST_BYTES));
      if (request.magic !== REQUEST_MAGIC)
        throw new ProtocolViolation(`bad request magic 0x${request.magic.toString(16)}`);
      this.stats.requests++;
      if (request.type === CMD.DISC) {
        await Promise.allSettled(this.inflight);
        this.socket.end();
        return;
      }
      // Bound the data held for this client: a client that stops reading replies stops being read.
      const weight =
        request.type === CMD.READ || request.type === CMD.WRITE
          ? Math.min(request.length, this.options.maxRequestBytes)
          : 0;
      while (this.inflight.size > 0 && this.inflightBytes + weight > this.options.maxInflightBytes) {
        await Promise.race(this.inflight);
      }
      let payload: Buffer | null = null;
      if (request.type === CMD.WRITE) {
        const refusal = this.checkWrite(request);
        if (refusal != null) {
          if (request.length > MAX_SKIPPED_WRITE_BYTES) {
            throw new ProtocolViolation(
              `write of ${request.length} bytes (limit ${this.options.maxRequestBytes})`,
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
    if (!this.options.cow) return new RequestError(NBD_ERR.EPERM, 'the export is read-only');
    if (request.length > this.options.maxRequestBytes) {
      return new RequestError(
        NBD_ERR.EINVAL,
        `write of ${request.length} bytes exceeds the maximum of ${this.options.maxRequestBytes}`,
      );
    }
    if ((request.flags & ~CMD_FLAG.FUA) !== 0)
      return new RequestError(NBD_ERR.EINVAL, 'unsupported command flags');
    if (request.offset + request.length > this.image!.size) {
      return new RequestError(NBD_ERR.ENOSPC, 'write beyond the end of the export');
    }
    return null;
  }

  private async handle(request: Request, payload: Buffer | null): Promise<void> {
    try {
      if (this.stopping) throw new RequestError(NBD_ERR.ESHUTDOWN, 'the server is shutting down');
      const image = this.image!;
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
          if (!this.options.cow) throw new RequestError(NBD_ERR.EPERM, 'the export is read-only');
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
          await this.send(encodeBlockStatus(request.handle, REPLY_FLAG_DONE, ALLOCATION_CONTEXT_ID, extents));
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
    if (length > this.options.maxRequestBytes) {
      throw new RequestError(
        df ? NBD_ERR.EOVERFLOW : NBD_ERR.EINVAL,
        `read of ${length} bytes exceeds the maximum of ${this.options.maxRequestBytes}`,
      );
    }
    if (offset + length > image.size)
      throw new RequestError(NBD_ERR.EINVAL, 'read beyond the end of the export');
    this.stats.bytesRead += length;
    if (length === 0) {
      await this.send(this.structured ? encodeStructuredNone(handle) : encodeSimpleReply(handle, 0));
      return;
    }
    if (!this.structured || df) {
      // One payload: assemble the whole range first, so an error can still be reported instead of data.
      const pieces: { offset: number; data: Buffer | null; length: number }[] = [];
      for await (const piece of image.read(offset, length)) pieces.push(piece);
      if (df && pieces.length === 1 && pieces[0]!.data == null) {
        await this.send(encodeOffsetHole(handle, REPLY_FLAG_DONE, offset, length));
        return;
      }
      const buffers = pieces.map((p) => p.data ?? Buffer.alloc(p.length));
      const header = this.structured
        ? encodeOffsetDataHeader(handle, REPLY_FLAG_DONE, offset, length)
        : encodeSimpleReply(handle, 0);
      await this.send(header, ...buffers);
      return;
    }
    // Structured: one content chunk per piece; the last carries DONE once all data is in hand.
    let previous: { offset: number; length: number; data: Buffer | null } | null = null;
    const sendPiece = (p: { offset: number; length: number; data: Buffer | null }, flags: number) =>
      p.data == null
        ? this.send(encodeOffsetHole(handle, flags, p.offset, p.length))
        : this.send(encodeOffsetDataHeader(handle, flags, p.offset, p.length), p.data);
    try {
      for await (const piece of image.read(offset, length)) {
        if (previous) await sendPiece(previous, 0);
        previous = piece;
      }
    } catch (error) {
      if (error instanceof ConnectionClosed) throw error;
      this.log.error({ err: error, offset, length }, 'reading the revision failed');
      await this.send(encodeStructuredError(handle, NBD_ERR.EIO, (error as Error).message));
      return;
    }
    await sendPiece(previous!, REPLY_FLAG_DONE);
  }

  private sendOk(request: Request): Promise<void> {
    return this.send(encodeSimpleReply(request.handle, 0));
  }

  private async sendError(request: Request, error: RequestError): Promise<void> {
    await this.send(
      this.structured
        ? encodeStructuredError(request.handle, error.errno, error.message)
        : encodeSimpleReply(request.handle, error.errno),
    );
  }

  /**
   * Writes one message (several buffers, never interleaved with another message) and waits while the
   * socket's buffer is full, so a slow client slows down the reads done for it.
   */
  private async send(...buffers: Buffer[]): Promise<void> {
    if (!this.write(...buffers)) throw new ConnectionClosed();
    if (this.socket.writableNeedDrain) {
      this.drain ??= new Promise<void>((resolve, reject) => {
        const done = () => {
          this.socket.off('drain', done);
          this.socket.off('close', closed);
          this.drain = null;
          resolve();
        };
        const closed = () => {
          this.socket.off('drain', done);
          this.socket.off('close', closed);
          this.drain = null;
          reject(new ConnectionClosed());
        };
        this.socket.on('drain', done);
        this.socket.on('close', closed);
      });
      await this.drain;
    }
  }

  /** Queues one message on the socket; false if the socket is gone. */
  private write(...buffers: Buffer[]): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    if (buffers.length === 1) this.socket.write(buffers[0]!);
    else {
      this.socket.cork();
      for (const b of buffers) this.socket.write(b);
      this.socket.uncork();
    }
    return true;
  }
}
