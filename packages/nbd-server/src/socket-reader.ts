import type { Socket } from 'node:net';

/** The peer closed the connection before a complete message arrived. */
export class ConnectionClosed extends Error {
  constructor(message = 'connection closed by the client') {
    super(message);
    this.name = 'ConnectionClosed';
  }
}

/**
 * Reads exact byte counts from a socket. Buffers at most `highWater` bytes (or the size of the read being
 * waited for) and pauses the socket beyond that, so a client that sends faster than we serve is held back
 * by TCP instead of filling memory.
 */
export class SocketReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { length: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private closed: Error | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly highWater = 1024 * 1024,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  private readonly onData = (data: Buffer) => {
    this.chunks.push(data);
    this.buffered += data.length;
    this.settle();
    if (this.buffered >= Math.max(this.highWater, this.waiter?.length ?? 0)) this.socket.pause();
  };
  private readonly onEnd = () => this.fail(new ConnectionClosed());
  private readonly onError = (error: Error) =>
    this.fail(new ConnectionClosed(`connection failed: ${error.message}`));

  /**
   * Stops reading the socket, so that another layer (TLS) can take it over; returns the bytes received
   * but not yet read.
   */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    const rest = Buffer.concat(this.chunks);
    this.chunks.length = 0;
    this.buffered = 0;
    this.closed = new ConnectionClosed('reader detached');
    return rest;
  }

  /** Resolves with exactly `length` bytes; rejects with ConnectionClosed if the stream ends first. */
  read(length: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('SocketReader: concurrent reads'));
    if (length === 0) return Promise.resolve(Buffer.alloc(0));
    if (this.buffered >= length) return Promise.resolve(this.take(length));
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.waiter = { length, resolve, reject };
      this.socket.resume();
    });
  }

  /** Reads and drops `length` bytes without holding them all in memory. */
  async skip(length: number): Promise<void> {
    let left = length;
    while (left > 0) {
      const n = Math.min(left, this.highWater);
      await this.read(n);
      left -= n;
    }
  }

  private settle(): void {
    const w = this.waiter;
    if (w && this.buffered >= w.length) {
      this.waiter = null;
      w.resolve(this.take(w.length));
    }
  }

  private take(length: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0]!;
    if (first.length >= length) {
      out = first.subarray(0, length);
      if (first.length === length) this.chunks.shift();
      else this.chunks[0] = first.subarray(length);
    } else {
      out = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const c = this.chunks[0]!;
        const n = Math.min(c.length, length - got);
        c.copy(out, got, 0, n);
        got += n;
        if (n === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(n);
      }
    }
    this.buffered -= length;
    if (this.buffered < this.highWater && !this.closed) this.socket.resume();
    return out;
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.closed = error;
    const w = this.waiter;
    if (w && this.buffered < w.length) {
      this.waiter = null;
      w.reject(error);
    }
  }
}
