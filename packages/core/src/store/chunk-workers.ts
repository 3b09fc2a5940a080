import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { chunkBuffers } from '../buffer-pool.js';
import type { HashAlgorithm, Reply, Request, Results, Task } from './chunk-worker-protocol.js';
import { blake, zstd } from './native.js';

/**
 * The CPU work on chunks — hashing, zstd compression and decompression — runs in a small pool of worker
 * threads (one per core, at most 4), so the main thread only moves data and every core hashes and
 * compresses. Measured on the 2-core reference machine: hashing 1 GiB in 4 MiB chunks takes ~0.7 s on
 * the main thread (or through WebCrypto on libuv's pool) and ~0.35 s here.
 *
 * Inputs in shared memory (the pooled chunk buffers of buffer-pool.ts) are handed over as they are; other
 * inputs are first copied into a pooled shared buffer (one memcpy, ~0.3 ms for 4 MiB). Structured-clone
 * copies and fresh 4 MiB allocations cost more than the hashing itself when measured. Results are written
 * into the caller's pooled buffers. zstd (native-modules.js) returns a buffer of its own, copied once into
 * the caller's: neither Node's zstd nor the addon writes into a given buffer. zstd-napi, used before, did,
 * and was measured against them with `pnpm bench:codecs` and `pnpm bench` (see codec.ts). Idle workers
 * are unreferenced and never keep the process alive.
 *
 * The binaries a task needs are loaded on the calling thread first (`checkBinaries`): one that is
 * missing is then the one-line error of native.ts, not a failed task that a reader would take for a
 * damaged chunk.
 *
 * The workers run chunk-worker.js: plain JavaScript that tsc type-checks through its JSDoc (`checkJs`),
 * so the one file runs as it is from source (vitest resolves @backy/core to src/, and a worker thread is
 * plain Node, which cannot run TypeScript before Node 22.18) and from dist, where tsup emits it as an
 * entry of its own next to index.js and the chunks that hold this module. The alternatives were less
 * robust: a worker in TypeScript needs a transpiler at run time from source (loading TypeScript alone
 * took ~0.5 s per test process), and a typed function sent as its `toString()` breaks silently when a
 * tool rewrites its body (coverage counters, esbuild's `__name` helpers, renamed imports).
 */
const WORKER_URL = new URL('./chunk-worker.js', import.meta.url);

/**
 * The parent's Node options except `--input-type` (of `node --input-type=module -e`), which a worker
 * started from a file refuses.
 */
function workerExecArgv(): string[] {
  const args = process.execArgv;
  return args.filter((arg, i) => !arg.startsWith('--input-type') && args[i - 1] !== '--input-type');
}

type Op = Task['op'];

interface Pending {
  resolve(result: Results[Op]): void;
  reject(error: Error): void;
}

class PoolWorker {
  readonly worker: Worker;
  readonly tasks = new Map<number, Pending>();

  constructor(onExit: (w: PoolWorker) => void) {
    this.worker = new Worker(WORKER_URL, { execArgv: workerExecArgv() });
    this.worker.unref();
    this.worker.on('message', (reply: Reply) => {
      const task = this.tasks.get(reply.id);
      if (!task) return;
      this.tasks.delete(reply.id);
      if (this.tasks.size === 0) this.worker.unref();
      if ('error' in reply) task.reject(new Error(reply.error));
      else task.resolve(reply.result);
    });
    const fail = (error: Error) => {
      for (const task of this.tasks.values()) task.reject(error);
      this.tasks.clear();
      onExit(this);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`chunk worker exited with code ${code}`)));
  }

  run(request: Request, task: Pending): void {
    if (this.tasks.size === 0) this.worker.ref();
    this.tasks.set(request.id, task);
    this.worker.postMessage(request);
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
  private readonly workers: PoolWorker[] = [];
  private nextId = 0;

  constructor(private readonly size = Math.max(1, Math.min(4, availableParallelism()))) {}

  /** Hex hash of `data` (`key`: the key of a keyed hash). */
  async digest(data: Uint8Array, algorithm: HashAlgorithm, key?: Uint8Array): Promise<string> {
    return (await this.submit({ op: 'digest', data, algorithm, key })).hash;
  }

  /**
   * Compresses `data` with zstd into `out` (which must be shared memory, e.g. a pooled chunk buffer) and
   * returns the compressed length, or -1 if the result does not fit into `out`.
   */
  async compressInto(data: Uint8Array, out: Uint8Array, level: number): Promise<number> {
    return (await this.submit({ op: 'compress', data, out: sharedOut(out), level })).length;
  }

  /** Decompresses zstd `data` into `out` (shared memory) and hashes the result, in one trip. */
  decompressInto(
    data: Uint8Array,
    out: Uint8Array,
    algorithm: HashAlgorithm,
    key?: Uint8Array,
  ): Promise<{ length: number; hash: string }> {
    return this.submit({ op: 'decompress', data, out: sharedOut(out), algorithm, key });
  }

  /**
   * True if `payload` — zstd-compressed, or the bytes themselves with `raw` — holds exactly `expect`.
   * Compares bytes without hashing (see `ChunkStore.equals`).
   */
  async equals(payload: Uint8Array, expect: Uint8Array, raw: boolean): Promise<boolean> {
    const staged = stage(expect);
    try {
      return (await this.submit({ op: 'equals', data: payload, expect: staged ?? expect, raw })).equal;
    } finally {
      if (staged) chunkBuffers.release(staged);
    }
  }

  private async submit<K extends Op>(task: Extract<Task, { op: K }>): Promise<Results[K]> {
    checkBinaries(task);
    const staged = stage(task.data);
    const worker = this.pick();
    const id = this.nextId++;
    try {
      // The worker answers a task of kind K with Results[K] (see `run` in chunk-worker.js).
      return (await new Promise<Results[Op]>((resolve, reject) =>
        worker.run({ ...task, data: staged ?? task.data, id }, { resolve, reject }),
      )) as Results[K];
    } finally {
      if (staged) chunkBuffers.release(staged);
    }
  }

  /** The least busy worker, starting one more while under the pool size. */
  private pick(): PoolWorker {
    let best = this.workers[0];
    for (const w of this.workers) if (w.tasks.size < best!.tasks.size) best = w;
    if (best == null || (best.tasks.size > 0 && this.workers.length < this.size)) {
      best = new PoolWorker((dead) => {
        const i = this.workers.indexOf(dead);
        if (i >= 0) this.workers.splice(i, 1);
      });
      this.workers.push(best);
    }
    return best;
  }
}

/** Loads what `task` needs on this thread (once; cached), so that a missing binary throws here. */
function checkBinaries(task: Task): void {
  if (task.op !== 'digest' && !(task.op === 'equals' && task.raw)) zstd();
  if ('algorithm' in task && task.algorithm !== 'sha256') blake();
}

let shared: ChunkWorkers | null = null;

/** The process-wide pool. */
export function chunkWorkers(): ChunkWorkers {
  shared ??= new ChunkWorkers();
  return shared;
}
