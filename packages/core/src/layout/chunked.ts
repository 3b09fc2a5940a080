import { rm } from 'node:fs/promises';
import { BackyError } from '../errors.js';
import type { RevisionReader, RevisionWriter, WriterStats } from '../revision-io.js';
import { chunkBuffers } from '../store/buffer-pool.js';
import { ChunkMap, hashChunk, isAllZero } from '../store/chunk-map.js';
import type { ChunkStore } from '../store/chunk-store.js';

export interface ChunkedWriterOptions {
  /** The parent's map: the new revision starts as its copy. */
  parentMap?: ChunkMap | null;
  /** Replace chunks even when the store already has them (after a distrusted revision). */
  rewrite?: boolean;
  /** Chunks being hashed/compressed/written at once (default 8): bounds memory. */
  concurrency?: number;
  chunkSize?: number;
}

/** Writes a revision into the chunk store; the map becomes durable at `seal`. */
export class ChunkedRevisionWriter implements RevisionWriter {
  private readonly map: ChunkMap;
  private readonly parentMap: ChunkMap | null;
  private readonly rewrite: boolean;
  private readonly concurrency: number;
  private readonly pending = new Set<Promise<void>>();
  /** Chunks whose length changed with a resize and that the source did not rewrite. */
  private readonly reshaped = new Set<number>();
  private failure: unknown = null;
  private generation = 0;
  private readonly generations = new Map<number, number>();
  private readonly fresh = new Set<string>();
  private sealed = false;
  readonly stats: WriterStats = { bytesWritten: 0, chunksWritten: 0, chunksReused: 0, chunksZero: 0 };

  constructor(
    private readonly store: ChunkStore,
    private readonly mapPath: string,
    options: ChunkedWriterOptions = {},
  ) {
    this.parentMap = options.parentMap ?? null;
    this.map = this.parentMap?.clone() ?? new ChunkMap(0, options.chunkSize);
    this.rewrite = options.rewrite ?? false;
    this.concurrency = options.concurrency ?? 8;
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

  async resize(size: number): Promise<void> {
    this.assertOpen();
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid image size ${size}`);
    if (size === this.map.size) return;
    // The last chunk that exists before and after (the old last one when growing, the new last one when
    // shrinking) may change length; then it must be re-cut at seal unless rewritten.
    const last = Math.min(this.map.chunkCount, Math.ceil(size / this.map.chunkSize)) - 1;
    const lastLength = last >= 0 ? this.map.chunkLength(last) : 0;
    this.map.resize(size);
    for (const index of [...this.reshaped]) if (index >= this.map.chunkCount) this.reshaped.delete(index);
    if (last >= 0 && this.map.chunkLength(last) !== lastLength) {
      if (this.map.get(last) != null) this.reshaped.add(last);
    }
  }

  keep(index: number): void {
    this.assertOpen();
    this.map.get(index);
    this.bump(index);
    if (this.parentMap == null || index >= this.parentMap.chunkCount) {
      throw new BackyError(
        'SOURCE_FAILED',
        `chunk ${index} was kept, but the parent revision has no such chunk`,
      );
    }
    this.map.set(index, this.parentMap.get(index));
    if (!this.reshaped.has(index)) this.stats.chunksReused++;
  }

  zero(index: number): void {
    this.assertOpen();
    this.bump(index);
    this.map.set(index, null);
    this.reshaped.delete(index);
    this.stats.chunksZero++;
  }

  allocate(length: number): Buffer {
    return chunkBuffers.acquire(length);
  }

  async write(index: number, data: Buffer): Promise<void> {
    this.assertOpen();
    const expected = this.map.chunkLength(index);
    if (data.length !== expected) {
      throw new RangeError(`chunk ${index} must be ${expected} bytes, got ${data.length}`);
    }
    this.reshaped.delete(index);
    const generation = this.bump(index);
    if (isAllZero(data)) {
      this.map.set(index, null);
      this.stats.chunksZero++;
      chunkBuffers.release(data);
      return;
    }
    const task = this.store$(index, generation, data)
      .catch((error) => {
        this.failure ??= error;
      })
      .finally(() => chunkBuffers.release(data));
    this.pending.add(task);
    void task.finally(() => this.pending.delete(task));
    while (this.pending.size >= this.concurrency) await Promise.race(this.pending);
    if (this.failure) throw this.failure;
  }

  /** Hashes (on the thread pool), dedupes against the parent and the store, and writes one chunk. */
  private async store$(index: number, generation: number, data: Buffer): Promise<void> {
    const hash = await hashChunk(data);
    // A later write/zero/keep of the same index wins over this one.
    if (this.generations.get(index) !== generation) return;
    this.map.set(index, hash);
    if (
      !this.rewrite &&
      this.parentMap != null &&
      index < this.parentMap.chunkCount &&
      this.parentMap.get(index) === hash
    ) {
      this.stats.chunksReused++;
      return;
    }
    const { written } = await this.store.put(hash, data, { rewrite: this.rewrite });
    if (written > 0) {
      this.stats.chunksWritten++;
      this.stats.bytesWritten += written;
      this.fresh.add(hash);
    } else this.stats.chunksReused++;
  }

  private bump(index: number): number {
    const generation = ++this.generation;
    this.generations.set(index, generation);
    return generation;
  }

  /** Hashes of the chunks this writer stored anew (for read-back verification). */
  get freshChunks(): ReadonlySet<string> {
    return this.fresh;
  }

  /** Waits for all chunks, makes them durable, then writes the map atomically. Returns the map. */
  async seal(): Promise<ChunkMap> {
    this.assertOpen();
    for (const index of this.reshaped) {
      const hash = this.map.get(index)!;
      const old = await this.store.get(hash);
      const data = Buffer.alloc(this.map.chunkLength(index));
      old.copy(data, 0, 0, Math.min(old.length, data.length));
      await this.write(index, data);
    }
    await Promise.all(this.pending);
    if (this.failure) throw this.failure;
    await this.store.flush();
    await this.map.save(this.mapPath);
    this.sealed = true;
    return this.map;
  }

  async abort(): Promise<void> {
    this.sealed = true;
    await Promise.allSettled(this.pending);
    await rm(this.mapPath, { force: true });
  }

  private assertOpen(): void {
    if (this.sealed) throw new Error('revision writer is already sealed');
    if (this.failure) throw this.failure;
  }
}

/** Reads a revision from the chunk store. */
export class ChunkedRevisionReader implements RevisionReader {
  constructor(
    private readonly store: ChunkStore,
    readonly map: ChunkMap,
  ) {}

  get size(): number {
    return this.map.size;
  }

  get chunkSize(): number {
    return this.map.chunkSize;
  }

  get chunkCount(): number {
    return this.map.chunkCount;
  }

  chunkLength(index: number): number {
    return this.map.chunkLength(index);
  }

  isZero(index: number): boolean {
    return this.map.isZero(index);
  }

  chunkHash(index: number): string | null {
    return this.map.get(index);
  }

  async read(index: number): Promise<Buffer> {
    return this.readChunk(index, false);
  }

  /** `read` without a copy; release the result with `chunkBuffers.release` when done with it. */
  async readPooled(index: number): Promise<Buffer> {
    return this.readChunk(index, true);
  }

  private async readChunk(index: number, pooled: boolean): Promise<Buffer> {
    const hash = this.map.get(index);
    if (hash == null) return Buffer.alloc(this.map.chunkLength(index));
    const data = pooled ? await this.store.getPooled(hash) : await this.store.get(hash);
    if (data.length !== this.map.chunkLength(index)) {
      throw new BackyError(
        'CHUNK_CORRUPT',
        `chunk ${hash} has length ${data.length}, expected ${this.map.chunkLength(index)}`,
      );
    }
    return data;
  }

  async close(): Promise<void> {}
}
