import { chunkBuffers } from '../buffer-pool.js';
import { BackyError } from '../errors.js';
import type { RevisionWriter, WriterStats } from '../revision-io.js';
import type { HashAlgorithm } from '../store/chunk-hash.js';
import { ChunkMap } from '../store/chunk-map.js';

/**
 * What both layouts' writers share: the new revision's chunk map (starting as the parent's), resizing,
 * keep/zero bookkeeping, chunks re-cut by a resize, bounded in-flight work and failure handling. A layout
 * adds where the bytes go (`write`, `seal`, `discard`) through the hooks below.
 */
export abstract class MapWriter implements RevisionWriter {
  protected readonly map: ChunkMap;
  protected readonly parentMap: ChunkMap | null;
  /** Chunks whose length changed with a resize and that the source did not rewrite. */
  protected readonly reshaped = new Set<number>();
  private readonly pending = new Set<Promise<void>>();
  protected failure: unknown = null;
  protected sealed = false;
  readonly stats: WriterStats = { bytesWritten: 0, chunksWritten: 0, chunksReused: 0, chunksZero: 0 };

  constructor(
    parentMap: ChunkMap | null,
    chunkSize: number | undefined,
    /** Chunks in flight at once: bounds memory. */
    private readonly concurrency: number,
    /** The hash a new map's chunks are named by (default `CHUNK_HASH`); a parent's map keeps its own. */
    algorithm?: HashAlgorithm,
  ) {
    this.parentMap = parentMap;
    this.map = parentMap?.clone() ?? new ChunkMap(0, chunkSize, undefined, algorithm);
  }

  get chunkSize(): number {
    return this.map.chunkSize;
  }

  get size(): number {
    return this.map.size;
  }

  get chunkCount(): number {
    return this.map.chunkCount;
  }

  chunkLength(index: number): number {
    return this.map.chunkLength(index);
  }

  currentHash(index: number): string | null {
    return this.map.get(index);
  }

  allocate(length: number): Buffer {
    return chunkBuffers.acquire(length);
  }

  async resize(size: number): Promise<void> {
    this.assertOpen();
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid image size ${size}`);
    if (size === this.map.size) return;
    // The last chunk that exists before and after (the old last one when growing, the new last one when
    // shrinking) may change length; then it must be re-cut at seal unless rewritten.
    const last = Math.min(this.map.chunkCount, Math.ceil(size / this.map.chunkSize)) - 1;
    const lastLength = last >= 0 ? this.map.chunkLength(last) : 0;
    this.map.resize(size);
    await this.onResize(size);
    for (const index of [...this.reshaped]) if (index >= this.map.chunkCount) this.reshaped.delete(index);
    if (last >= 0 && this.map.chunkLength(last) !== lastLength && this.map.get(last) != null) {
      this.reshaped.add(last);
    }
  }

  keep(index: number): void {
    this.assertOpen();
    this.map.get(index); // range check
    if (this.parentMap == null || index >= this.parentMap.chunkCount) {
      throw new BackyError(
        'SOURCE_FAILED',
        `chunk ${index} was kept, but the parent revision has no such chunk`,
      );
    }
    this.onKeep(index, this.parentMap);
    if (!this.reshaped.has(index)) this.stats.chunksReused++;
  }

  zero(index: number): void {
    this.assertOpen();
    this.onZero(index);
    this.map.set(index, null);
    this.reshaped.delete(index);
    this.stats.chunksZero++;
  }

  abstract write(index: number, data: Buffer): Promise<void>;

  /** Cancels the revision: waits for running work, then removes what the layout wrote. */
  async abort(): Promise<void> {
    this.sealed = true;
    await Promise.allSettled(this.pending);
    await this.discard();
  }

  /** The layout's own resize work (e.g. truncating an image file). */
  protected async onResize(_size: number): Promise<void> {}

  /** The layout's own bookkeeping when a chunk is kept as in the parent. */
  protected onKeep(_index: number, _parent: ChunkMap): void {}

  /** The layout's own bookkeeping before a chunk becomes zero. */
  protected onZero(_index: number): void {}

  /** Removes everything the writer wrote. */
  protected abstract discard(): Promise<void>;

  /** Checks that `data` is exactly chunk `index`'s length. */
  protected checkLength(index: number, data: Buffer): void {
    const expected = this.map.chunkLength(index);
    if (data.length !== expected)
      throw new RangeError(`chunk ${index} must be ${expected} bytes, got ${data.length}`);
  }

  /**
   * Runs `work` in the background, recycling `data` afterwards, and waits while too much is in flight.
   * The first failure is kept and thrown by every later call. Work given as a function starts only once
   * fewer than `concurrency` tasks run: a source reading ahead calls `write` several times at once, and
   * starting each call's work at once let up to `concurrency` + (readers − 1) chunks hold a raw and a
   * compressed buffer each (22 pooled 4 MiB buffers instead of 16 for the file source; `pnpm bench:memory`).
   */
  protected async enqueue(work: Promise<void> | (() => Promise<void>), data: Buffer): Promise<void> {
    if (typeof work === 'function') {
      while (this.pending.size >= this.concurrency) await Promise.race(this.pending);
      if (this.failure) {
        chunkBuffers.release(data);
        throw this.failure;
      }
      work = work();
    }
    const task = work
      .catch((error) => {
        this.failure ??= error;
      })
      .finally(() => chunkBuffers.release(data));
    this.pending.add(task);
    void task.finally(() => this.pending.delete(task));
    while (this.pending.size >= this.concurrency) await Promise.race(this.pending);
    if (this.failure) throw this.failure;
  }

  /** Waits for all background work; throws its first failure. */
  protected async drain(): Promise<void> {
    await Promise.all(this.pending);
    if (this.failure) throw this.failure;
  }

  protected assertOpen(): void {
    if (this.sealed) throw new Error('revision writer is already sealed');
    if (this.failure) throw this.failure;
  }
}
