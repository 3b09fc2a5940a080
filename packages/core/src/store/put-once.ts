import { chunkBuffers } from '../buffer-pool.js';
import type { PutResult } from './contract.js';

/**
 * One write per chunk at a time: a put of a hash that is being written waits for that write and writes
 * nothing itself (a backup meets the same content in many places at once). Both drivers use it.
 */
export class PutOnce {
  private readonly running = new Map<string, Promise<PutResult>>();

  put(hash: string, write: () => Promise<PutResult>): Promise<PutResult> {
    const running = this.running.get(hash);
    if (running) return running.then(() => ({ written: 0 }));
    const promise = write().finally(() => this.running.delete(hash));
    this.running.set(hash, promise);
    return promise;
  }
}

/**
 * The caller's own copy of a pooled chunk, the pooled buffer handed back (shared memory is invisible to
 * the garbage collector's accounting and would pile up).
 */
export function unpooled(data: Buffer): Buffer {
  const copy = Buffer.from(data);
  chunkBuffers.release(data);
  return copy;
}
