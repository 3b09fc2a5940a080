import type { RevisionReader } from '../revision-io.js';
import type { HashAlgorithm } from '../store/chunk-hash.js';
import type { ChunkMap } from '../store/chunk-map.js';

/** What both layouts' readers share: everything answered from the revision's chunk map. */
export abstract class MapReader implements RevisionReader {
  constructor(readonly map: ChunkMap) {}

  get size(): number {
    return this.map.size;
  }

  get hashAlgorithm(): HashAlgorithm {
    return this.map.algorithm;
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

  abstract read(index: number): Promise<Buffer>;

  async close(): Promise<void> {}
}
