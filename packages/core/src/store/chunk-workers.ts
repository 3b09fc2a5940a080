import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { chunkBuffers } from './buffer-pool.js';
import type { HashAlgorithm } from './chunk-map.js';

/**
 * The CPU work on chunks — hashing, zstd compression and decompression — runs in a small pool of worker
 * threads (one per core, at most 4), so the main thread only moves data and every core hashes and
 * compresses. Measured on the 2-core reference machine: hashing 1 GiB in 4 MiB chunks takes ~0.7 s on
 * the main thread (or through WebCrypto on libuv's pool) and ~0.35 s here.
 *
 * Inputs in shared memory (the pooled chunk buffers of buffer-pool.ts) are handed over as they are; other
 * inputs are first copied into a pooled shared buffer (one memcpy, ~0.3 ms for 4 MiB). Structured-clone
 * copies and fresh 4 MiB allocations cost more than the hashing itself when measured. Results are written
 * into the caller's pooled buffers through zstd's buffer-to-buffer calls, so nothing is allocated per
 * chunk: each fresh 4 MiB allocation costs a thousand page faults, which showed as up to a second of
 * system time per GiB. Idle workers are unreferenced and never keep the process alive.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let zstd = null;
let cctx = null;
let dctx = null;
let blake = null;
let scratch = Buffer.alloc(0);
const hashers = {
  sha256: (data) => createHash('sha256').update(data).digest('hex'),
  blake3: (data) => (blake ??= require(workerData.blakePath)).blake3(data).toString('hex'),
};
const hash = (data, algorithm) => {
  const hasher = hashers[algorithm];
  if (!hasher) throw new Error('unknown hash algorithm ' + algorithm);
  return hasher(data);
};
const view = (data) => Buffer.from(data.buffer, data.byteOffset, data.byteLength); // shared memory: no copy
const load = () => {
  zstd ??= require(workerData.zstdPath);
  cctx ??= new zstd.CCtx();
  dctx ??= new zstd.DCtx();
};
const ops = {
  digest: ({ data, algorithm }) => ({ hash: hash(view(data), algorithm) }),
  // Compresses into the caller's buffer; length -1 when the result does not fit (store it raw then).
  compress: ({ data, out, level }) => {
    load();
    try {
      return { length: cctx.compress(view(out), view(data), level) };
    } catch (error) {
      if (out.byteLength < zstd.compressBound(data.byteLength)) return { length: -1 };
      throw error;
    }
  },
  decompress: ({ data, out, algorithm }) => {
    load();
    const target = view(out);
    const length = dctx.decompress(target, view(data));
    return { length, hash: hash(target.subarray(0, length), algorithm) };
  },
  equals: ({ data, expect, raw }) => {
    const wanted = view(expect);
    if (raw) return { equal: view(data).equals(wanted) };
    load();
    if (scratch.length < wanted.length) scratch = Buffer.allocUnsafe(wanted.length);
    let length;
    try {
      length = dctx.decompress(scratch.subarray(0, wanted.length), view(data));
    } catch {
      return { equal: false }; // damaged, or longer than expected
    }
    return { equal: length === wanted.length && scratch.subarray(0, length).equals(wanted) };
  },
};
// A message that cannot be read has no id to answer: end the worker, which fails all its tasks rather
// than leaving one waiting forever.
parentPort.on('messageerror', () => process.exit(70));
parentPort.on('message', (message) => {
  try {
    parentPort.postMessage({ id: message.id, ...ops[message.op](message) });
  } catch (error) {
    parentPort.postMessage({ id: message.id, error: String((error && error.message) || error) });
  }
});
`;

interface Reply {
  id: number;
  length?: number;
  hash?: string;
  equal?: boolean;
  error?: string;
}

interface Task {
  resolve(reply: Reply): void;
  reject(error: Error): void;
}

class PoolWorker {
  readonly worker: Worker;
  readonly tasks = new Map<number, Task>();

  constructor(paths: { zstdPath: string; blakePath: string }, onExit: (w: PoolWorker) => void) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: paths });
    this.worker.unref();
    this.worker.on('message', (reply: Reply) => {
      const task = this.tasks.get(reply.id);
      if (!task) return;
      this.tasks.delete(reply.id);
      if (this.tasks.size === 0) this.worker.unref();
      if (reply.error != null) task.reject(new Error(reply.error));
      else task.resolve(reply);
    });
    const fail = (error: Error) => {
      for (const task of this.tasks.values()) task.reject(error);
      this.tasks.clear();
      onExit(this);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`chunk worker exited with code ${code}`)));
  }

  run(message: { id: number; [key: string]: unknown }, task: Task): void {
    if (this.tasks.size === 0) this.worker.ref();
    this.tasks.set(message.id, task);
    this.worker.postMessage(message);
  }
}

function sharedOut(out: Uint8Array): Uint8Array {
  if (!(out.buffer instanceof SharedArrayBuffer))
    throw new TypeError('chunk worker output must be in shared memory (a pooled chunk buffer)');
  return out;
}

/** Shared memory goes to a worker as it is; anything else is first copied into a pooled shared buffer. */
function stage(data: Uint8Array): Buffer | null {
  if (data.buffer instanceof SharedArrayBuffer) return null;
  const staged = chunkBuffers.acquire(data.byteLength);
  staged.set(data);
  return staged;
}

export class ChunkWorkers {
  private readonly paths = {
    zstdPath: createRequire(import.meta.url).resolve('zstd-napi/binding'),
    blakePath: createRequire(import.meta.url).resolve('@napi-rs/blake-hash'),
  };
  private readonly workers: PoolWorker[] = [];
  private nextId = 0;

  constructor(private readonly size = Math.max(1, Math.min(4, availableParallelism()))) {}

  /** Hex hash of `data`. */
  async digest(data: Uint8Array, algorithm: HashAlgorithm): Promise<string> {
    return (await this.submit({ op: 'digest', data, algorithm })).hash!;
  }

  /**
   * Compresses `data` with zstd into `out` (which must be shared memory, e.g. a pooled chunk buffer) and
   * returns the compressed length, or -1 if the result does not fit into `out`.
   */
  async compressInto(data: Uint8Array, out: Uint8Array, level: number): Promise<number> {
    return (await this.submit({ op: 'compress', data, out: sharedOut(out), level })).length!;
  }

  /** Decompresses zstd `data` into `out` (shared memory) and hashes the result, in one trip. */
  async decompressInto(
    data: Uint8Array,
    out: Uint8Array,
    algorithm: HashAlgorithm,
  ): Promise<{ length: number; hash: string }> {
    const reply = await this.submit({ op: 'decompress', data, out: sharedOut(out), algorithm });
    return { length: reply.length!, hash: reply.hash! };
  }

  /**
   * True if `payload` — zstd-compressed, or the bytes themselves with `raw` — holds exactly `expect`.
   * Compares bytes without hashing (see `ChunkStore.equals`).
   */
  async equals(payload: Uint8Array, expect: Uint8Array, raw: boolean): Promise<boolean> {
    const staged = stage(expect);
    try {
      return (await this.submit({ op: 'equals', data: payload, expect: staged ?? expect, raw })).equal!;
    } finally {
      if (staged) chunkBuffers.release(staged);
    }
  }

  private async submit(message: {
    op: string;
    data: Uint8Array;
    out?: Uint8Array;
    level?: number;
    expect?: Uint8Array;
    raw?: boolean;
    algorithm?: HashAlgorithm;
  }): Promise<Reply> {
    const staged = stage(message.data);
    const worker = this.pick();
    const id = this.nextId++;
    try {
      return await new Promise<Reply>((resolve, reject) =>
        worker.run({ ...message, data: staged ?? message.data, id }, { resolve, reject }),
      );
    } finally {
      if (staged) chunkBuffers.release(staged);
    }
  }

  /** The least busy worker, starting one more while under the pool size. */
  private pick(): PoolWorker {
    let best = this.workers[0];
    for (const w of this.workers) if (w.tasks.size < best!.tasks.size) best = w;
    if (best == null || (best.tasks.size > 0 && this.workers.length < this.size)) {
      best = new PoolWorker(this.paths, (dead) => {
        const i = this.workers.indexOf(dead);
        if (i >= 0) this.workers.splice(i, 1);
      });
      this.workers.push(best);
    }
    return best;
  }
}

let shared: ChunkWorkers | null = null;

/** The process-wide pool. */
export function chunkWorkers(): ChunkWorkers {
  shared ??= new ChunkWorkers();
  return shared;
}
