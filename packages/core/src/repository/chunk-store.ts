import { join } from 'node:path';
import { DirectoryBackend } from '../backend/directory.js';
import { Repository, type RepositoryOptions } from './repository.js';

export type { ChunkStore, PutResult, ReadOptions, StoreEntry } from '../store/contract.js';

export type ChunkStoreOptions = RepositoryOptions;

/**
 * The directory store: the repository over a `DirectoryBackend` at `root` (an archive's `chunks/` or a
 * shared directory), chunks at `<root>/ab/<hash>`, the registry of the archives using it in
 * `<root>/.archives/` and `<root>/.purge.lock`.
 */
export class DirectoryChunkStore extends Repository {
  constructor(root: string, options: ChunkStoreOptions = {}) {
    super(new DirectoryBackend(root), options);
  }

  get chunksDir(): string {
    return this.root;
  }

  get purgeLockPath(): string {
    return join(this.root, '.purge.lock');
  }

  /** The file of chunk `hash`. */
  pathOf(hash: string): string {
    return join(this.root, hash.slice(0, 2), hash);
  }
}
