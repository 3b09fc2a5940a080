/**
 * One JSON object per line over a unix socket: the framing of both QMP (QEMU's monitor) and the QEMU
 * guest agent's protocol. Knows nothing of either's messages.
 */
import { connect, type Socket } from 'node:net';
import { BackyError } from '@backy/core/source';

export type JsonMessage = Record<string, unknown>;

/** What the socket is, for error messages: "QMP socket /run/vm1.qmp". */
export interface JsonSocketOptions {
  what: string;
  signal?: AbortSignal;
  /** Milliseconds to wait for the connection (default 10 s). */
  timeoutMs?: number;
}

export class JsonLineSocket {
  private buffer = '';
  private closedError: BackyError | null = null;
  private readonly listeners = new Set<(message: JsonMessage) => void>();
  private readonly closeListeners = new Set<(error: BackyError) => void>();

  private constructor(
    private readonly socket: Socket,
    readonly what: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (piece: string) => this.receive(piece));
    socket.on('error', (error: NodeJS.ErrnoException) => this.closed(describeSocketError(what, error)));
    socket.on('close', () => this.closed(new BackyError('SOURCE_FAILED', `${what}: connection closed`)));
  }

  static connect(path: string, options: JsonSocketOptions): Promise<JsonLineSocket> {
    const { what } = options;
    return new Promise((resolve, reject) => {
      options.signal?.throwIfAborted();
      const socket = connect({ path });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new BackyError('SOURCE_UNAVAILABLE', `${what}: no connection within ${seconds(options)} s`));
      }, options.timeoutMs ?? 10_000);
      const fail = (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        socket.destroy();
        reject(describeSocketError(what, error));
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', fail);
        resolve(new JsonLineSocket(socket, what));
      });
    });
  }

  send(message: JsonMessage): void {
    if (this.closedError != null) throw this.closedError;
    this.socket.write(`${JSON.stringify(message)}\n`);
  }

  /** Calls `listener` with every message received; returns the function that stops it. */
  onMessage(listener: (message: JsonMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` once the connection is gone (at once if it already is). */
  onClose(listener: (error: BackyError) => void): () => void {
    if (this.closedError != null) listener(this.closedError);
    else this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  get isClosed(): boolean {
    return this.closedError != null;
  }

  close(): void {
    this.closed(new BackyError('SOURCE_FAILED', `${this.what}: connection closed by backy`));
    this.socket.destroy();
  }

  private receive(piece: string): void {
    this.buffer += piece;
    for (let end = this.buffer.indexOf('\n'); end >= 0; end = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, end).trim();
      this.buffer = this.buffer.slice(end + 1);
      // The guest agent's guest-sync-delimited answers start with 0xFF; nothing else is sent there.
      const text = line.replace(/^\xff/, '');
      if (text === '') continue;
      let message: unknown;
      try {
        message = JSON.parse(text);
      } catch {
        this.closed(new BackyError('SOURCE_FAILED', `${this.what}: not JSON: ${text.slice(0, 80)}`));
        this.socket.destroy();
        return;
      }
      if (message != null && typeof message === 'object')
        for (const listener of [...this.listeners]) listener(message as JsonMessage);
    }
  }

  private closed(error: BackyError): void {
    if (this.closedError != null) return;
    this.closedError = error;
    for (const listener of [...this.closeListeners]) listener(error);
    this.closeListeners.clear();
  }
}

const seconds = (options: { timeoutMs?: number }) => (options.timeoutMs ?? 10_000) / 1000;

function describeSocketError(what: string, error: NodeJS.ErrnoException): BackyError {
  const reason =
    error.code === 'ENOENT'
      ? 'no such socket'
      : error.code === 'ECONNREFUSED'
        ? 'connection refused (nothing listens there)'
        : error.code === 'EACCES'
          ? 'permission denied'
          : error.code === 'ENOTSOCK'
            ? 'not a socket'
            : error.code === 'EAGAIN'
              ? 'busy: another client is connected (QEMU serves one client per socket)'
              : (error.code ?? error.message);
  return new BackyError('SOURCE_UNAVAILABLE', `${what}: ${reason}`, { cause: error });
}
