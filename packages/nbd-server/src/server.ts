import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { BackyError, listenUnixSocket, type UnixSocketListener } from '@backy/core';
import { ProtocolViolation } from '@backy/nbd-protocol';
import type { Logger } from 'pino';
import { Handshake } from './handshake.js';
import { ConnectionClosed, SocketReader } from './socket-reader.js';
import { SocketWriter } from './socket-writer.js';
import { TlsFailed, TlsUpgrader } from './tls.js';
import { Transmission } from './transmission.js';
import type { NbdServerOptions, ServerSettings } from './types.js';

const DEFAULT_MAX_REQUEST = 32 * 1024 * 1024;

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
  private readonly tls: TlsUpgrader | null;
  private unixSocket: UnixSocketListener | null = null;
  readonly options: ServerSettings;

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
    this.tls = options.tls == null ? null : new TlsUpgrader(options.tls);
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
          { address: address.address, port: address.port, cow: this.options.cow, tls: this.tls != null },
          'NBD server listening',
        );
        resolve(address);
      });
    });
  }

  /**
   * Starts listening on a Unix socket at `path` that only this user (mode 0600), or also the group `gid`
   * (0660), can connect to; a stale socket left by a dead server is replaced.
   */
  async listenUnix(path: string, options: { gid?: number } = {}): Promise<{ path: string; mode: number }> {
    this.unixSocket = await listenUnixSocket(this.server, path, options);
    this.options.logger.info(
      { socket: path, mode: this.unixSocket.mode.toString(8), cow: this.options.cow, tls: this.tls != null },
      'NBD server listening',
    );
    return { path, mode: this.unixSocket.mode };
  }

  get address(): AddressInfo | null {
    const address = this.server.address();
    return address != null && typeof address === 'object' ? address : null;
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
      const stopped =
        this.unixSocket != null
          ? this.unixSocket.close()
          : new Promise<void>((resolve) => this.server.close(() => resolve()));
      await Promise.allSettled([...this.connections.keys()].map((c) => c.shutdown()));
      await Promise.allSettled([...this.connections.values()]);
      await stopped;
      this.options.logger.info('NBD server stopped');
    })();
    for (const resolve of this.onClosed.splice(0)) void this.closing.then(resolve);
    return this.closing;
  }

  private accept(socket: Socket): void {
    const log = this.options.logger.child({
      client: socket.remoteAddress == null ? 'unix socket' : `${socket.remoteAddress}:${socket.remotePort}`,
    });
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.connections.size >= this.options.maxConnections) {
      log.warn({ limit: this.options.maxConnections }, 'too many NBD clients; connection refused');
      socket.destroy();
      return;
    }
    const connection = new Connection(socket, this.options, log.child({ conn: this.nextId++ }), this.tls);
    this.connections.set(
      connection,
      connection.run().finally(() => this.connections.delete(connection)),
    );
  }
}

/** One client: the handshake, then transmission, and the clean-up however it ends. */
class Connection {
  /** The reader and writer of the plain socket, or of the TLS session once it is up. */
  private readonly io: { reader: SocketReader; writer: SocketWriter };
  private readonly handshake: Handshake;
  private transmission: Transmission | null = null;
  private stopping = false;
  private tlsSocket: TLSSocket | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly options: ServerSettings,
    private readonly log: Logger,
    tls: TlsUpgrader | null,
  ) {
    socket.setNoDelay(true);
    this.io = { reader: new SocketReader(socket), writer: new SocketWriter(socket) };
    this.handshake = new Handshake(
      this.io,
      options,
      log,
      () => this.stopping,
      tls == null ? null : () => this.startTls(tls),
    );
    // Errors surface through the reader and failed writes; this keeps them from being unhandled.
    socket.on('error', (error) => this.log.debug({ err: error }, 'socket error'));
  }

  private async startTls(tls: TlsUpgrader): Promise<void> {
    // The client waits for our ACK before its TLS hello; anything sent before that is not NBD.
    if (this.io.reader.detach().length > 0) throw new ProtocolViolation('data after NBD_OPT_STARTTLS');
    const { socket, peer } = await tls.upgrade(this.socket);
    this.tlsSocket = socket;
    socket.on('error', (error) => this.log.debug({ err: error }, 'TLS socket error'));
    this.io.reader = new SocketReader(socket);
    this.io.writer = new SocketWriter(socket);
    this.log.info(peer, 'TLS established');
  }

  private destroy(): void {
    this.tlsSocket?.destroy();
    this.socket.destroy();
  }

  private get destroyed(): boolean {
    return this.socket.destroyed || this.tlsSocket?.destroyed === true;
  }

  async run(): Promise<void> {
    this.log.debug('client connected');
    // A client that never finishes the handshake would hold a connection slot forever.
    const handshakeTimer = setTimeout(() => {
      this.log.warn(
        { timeoutMs: this.options.handshakeTimeoutMs },
        'NBD handshake timed out; connection dropped',
      );
      this.destroy();
    }, this.options.handshakeTimeoutMs);
    try {
      const negotiated = await this.handshake.run();
      clearTimeout(handshakeTimer);
      if (negotiated == null) return;
      this.transmission = new Transmission(
        this.io.reader,
        this.io.writer,
        negotiated,
        this.options,
        this.log,
        () => this.stopping,
      );
      await this.transmission.run();
    } catch (error) {
      if (error instanceof ConnectionClosed) this.log.debug({ reason: error.message }, 'client went away');
      else if (error instanceof TlsFailed)
        this.log.warn({ reason: error.message }, 'TLS handshake failed; connection dropped');
      else if (error instanceof ProtocolViolation)
        this.log.warn({ reason: error.message }, 'NBD protocol violation; connection dropped');
      else this.log.error({ err: error }, 'NBD connection failed');
    } finally {
      clearTimeout(handshakeTimer);
      await this.transmission?.settled();
      this.destroy();
      const attached = this.handshake.attached;
      await attached?.image.close();
      await attached?.opened
        .release()
        .catch((error) => this.log.warn({ err: error }, 'releasing the export failed'));
      if (attached) {
        this.log.info(
          { export: attached.opened.name, ...this.transmission?.stats },
          'NBD client disconnected',
        );
      }
    }
  }

  /** Called by the server on shutdown. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    await this.transmission?.settled();
    if (!this.destroyed) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.socket.once('close', () => resolve());
        this.tlsSocket?.once('close', () => resolve());
        timer = setTimeout(resolve, this.options.shutdownGraceMs);
      });
      clearTimeout(timer);
    }
    this.destroy();
  }
}
