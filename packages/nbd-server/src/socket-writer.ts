import type { Socket } from 'node:net';
import { ConnectionClosed } from './socket-reader.js';

/** Writes whole messages to a socket, the counterpart of SocketReader. */
export class SocketWriter {
  private drain: Promise<void> | null = null;

  constructor(private readonly socket: Socket) {}

  /** Queues one message on the socket; false if the socket is gone. */
  write(...buffers: Buffer[]): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    if (buffers.length === 1) this.socket.write(buffers[0]!);
    else {
      this.socket.cork();
      for (const b of buffers) this.socket.write(b);
      this.socket.uncork();
    }
    return true;
  }

  /**
   * Writes one message (several buffers, never interleaved with another message) and waits while the
   * socket's buffer is full, so a slow client slows down the reads done for it.
   */
  async send(...buffers: Buffer[]): Promise<void> {
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

  /** Half-closes the socket once what is queued has been sent. */
  end(): void {
    this.socket.end();
  }
}
