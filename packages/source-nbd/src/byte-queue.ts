/** Buffers a socket's bytes for a parser that asks for exact lengths. */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private available = 0;
  private waiting: { need: number; wake: () => void; fail: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  push(piece: Buffer): void {
    this.chunks.push(piece);
    this.available += piece.length;
    if (this.waiting != null && this.available >= this.waiting.need) {
      const { wake } = this.waiting;
      this.waiting = null;
      wake();
    }
  }

  fail(error: Error): void {
    this.failure ??= error;
    const w = this.waiting;
    this.waiting = null;
    w?.fail(this.failure);
  }

  private async need(n: number): Promise<void> {
    if (this.available >= n) return;
    if (this.failure != null) throw this.failure;
    await new Promise<void>((wake, fail) => {
      this.waiting = { need: n, wake, fail };
    });
  }

  /** The next `n` bytes as one buffer. */
  async read(n: number): Promise<Buffer> {
    await this.need(n);
    const first = this.chunks[0];
    if (first != null && first.length >= n) {
      const out = first.subarray(0, n);
      this.consume(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.copyOut(out, 0, n);
    return out;
  }

  /** The next `n` bytes into `target` at `at`, as they arrive (no intermediate buffer of `n` bytes). */
  async readInto(target: Buffer, at: number, n: number): Promise<void> {
    let done = 0;
    while (done < n) {
      await this.need(1);
      const step = Math.min(this.available, n - done);
      this.copyOut(target, at + done, step);
      done += step;
    }
  }

  private copyOut(target: Buffer, at: number, n: number): void {
    let copied = 0;
    while (copied < n) {
      const head = this.chunks[0]!;
      const step = Math.min(head.length, n - copied);
      head.copy(target, at + copied, 0, step);
      copied += step;
      this.consume(step);
    }
  }

  private consume(n: number): void {
    this.available -= n;
    while (n > 0) {
      const head = this.chunks[0]!;
      if (head.length <= n) {
        this.chunks.shift();
        n -= head.length;
      } else {
        this.chunks[0] = head.subarray(n);
        n = 0;
      }
    }
  }
}
