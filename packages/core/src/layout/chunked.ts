import { chunkBuffers } from '../buffer-pool.js';
import { BackyError } from '../errors.js';
import type { ChunkStore, ReadOptions } from '../repository/chunk-store.js';
import { CHUNK_HASH, hashChunk, isAllZero } from '../store/chunk-hash.js';
import type { ChunkMap } from '../store/chunk-map.js';
import type { ChunkNaming } from '../store/contract.js';
import { MapReader } from './map-reader.js';
import { MapWriter } from './map-writer.js';

export interface ChunkedWriterOptions {
  /** The parent's map: the new revision starts as its copy. */
  parentMap?: ChunkMap | null;
  /** Replace chunks even when the store already has them (after a distrusted revision). */
  rewrite?: boolean;
  /** Chunks being hashed/compressed/written at once (default 8): bounds memory. */
  concurrency?: number;
  chunkSize?: number;
}

/** Writes a revision into the chunk store; `seal` makes the chunks durable (the archive writes the map). */
export class ChunkedRevisionWriter extends MapWriter {
  private readonly rewrite: boolean;
  private generation = 0;
  private readonly generations = new Map<number, number>();
  private readonly fresh = new Set<string>();
  /** The store's own naming of chunks (an encrypted store's keyed hash), or null for `CHUNK_HASH`. */
  private readonly naming: ChunkNaming | null;

  constructor(
    private readonly store: ChunkStore,
    options: ChunkedWriterOptions = {},
  ) {
    const naming = store.naming ?? null;
    const algorithm = naming?.algorithm ?? CHUNK_HASH;
    super(options.parentMap ?? null, options.chunkSize, options.concurrency ?? 8, algorithm);
    this.rewrite = options.rewrite ?? false;
    this.naming = naming;
    // A parent named otherwise would carry names of another hash into this store (see `usableParent`).
    if (this.map.algorithm !== algorithm)
      throw new Error(
        `a parent map by ${this.map.algorithm} cannot be built upon in a store naming by ${algorithm}`,
      );
  }

  protected override onKeep(index: number, parent: ChunkMap): void {
    this.bump(index);
    this.map.set(index, parent.get(index));
  }

  protected override onZero(index: number): void {
    this.bump(index);
  }

  async write(index: number, data: Buffer): Promise<void> {
    this.assertOpen();
    this.checkLength(index, data);
    this.reshaped.delete(index);
    const generation = this.bump(index);
    if (isAllZero(data)) {
      this.map.set(index, null);
      this.stats.chunksZero++;
      chunkBuffers.release(data);
      return;
    }
    await this.enqueue(() => this.store$(index, generation, data), data);
  }

  /** Hashes (in the chunk workers), dedupes against the parent and the store, and writes one chunk. */
  private async store$(index: number, generation: number, data: Buffer): Promise<void> {
    const hash =
      this.naming != null ? await this.naming.name(data) : await hashChunk(data, this.map.algorithm);
    // A later write/zero/keep of the same index wins over this one.
    if (this.generations.get(index) !== generation) return;
    this.map.set(index, hash);
    const parentHash =
      this.parentMap != null && index < this.parentMap.chunkCount ? this.parentMap.get(index) : null;
    if (!this.rewrite && parentHash === hash) {
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

  /** Waits for all chunks and makes them durable. Returns the map. */
  async seal(): Promise<ChunkMap> {
    this.assertOpen();
    for (const index of this.reshaped) {
      const hash = this.map.get(index)!;
      const old = await this.store.get(hash, this.map.algorithm);
      const data = Buffer.alloc(this.map.chunkLength(index));
      old.copy(data, 0, 0, Math.min(old.length, data.length));
      await this.write(index, data);
    }
    await this.drain();
    await this.store.flush();
    this.sealed = true;
    return this.map;
  }

  /** Nothing to remove: chunks already in the store may be shared, and purge removes unused ones. */
  protected async discard(): Promise<void> {}
}

/** Reads a revision from the chunk store. */
export class ChunkedRevisionReader extends MapReader {
  constructor(
    private readonly store: ChunkStore,
    map: ChunkMap,
  ) {
    super(map);
    if (map.algorithm === 'keyed-blake3' && store.naming?.algorithm !== map.algorithm) {
      throw new BackyError(
        'CONFIG_INVALID',
        `the revision's chunks are in an encrypted store, but ${store.root} is opened without its key: set store.encryption.key-file in the archive config`,
      );
    }
    const naming = store.naming;
    if (naming != null && map.algorithm === naming.algorithm) this.hashData = (data) => naming.name(data);
  }

  /** Set when the chunks are named by the store's keyed hash. */
  readonly hashData?: (data: Buffer) => Promise<string>;

  async read(index: number): Promise<Buffer> {
    return this.readChunk(index, false);
  }

  /** `read` without a copy; release the result with `chunkBuffers.release` when done with it. */
  async readPooled(index: number, options: ReadOptions = {}): Promise<Buffer> {
    return this.readChunk(index, true, options);
  }

  async equalsStored(index: number, data: Buffer): Promise<boolean> {
    const hash = this.map.get(index);
    if (data.length !== this.map.chunkLength(index)) return false;
    return hash == null ? isAllZero(data) : this.store.equals(hash, data);
  }

  private async readChunk(index: number, pooled: boolean, options: ReadOptions = {}): Promise<Buffer> {
    const hash = this.map.get(index);
    if (hash == null) return Buffer.alloc(this.map.chunkLength(index));
    const { algorithm } = this.map;
    const data = pooled
      ? await this.store.getPooled(hash, algorithm, options)
      : await this.store.get(hash, algorithm);
    if (data.length !== this.map.chunkLength(index)) {
      throw new BackyError(
        'CHUNK_CORRUPT',
        `chunk ${hash} has length ${data.length}, expected ${this.map.chunkLength(index)}`,
      );
    }
    return data;
  }
}
