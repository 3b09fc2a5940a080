import { mkdir, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { BackyError, ioError, isBackyError } from '../errors.js';
import { exists, fsyncDir, isTempName, tempPathFor } from '../fs-util.js';
import { acquireLock, type Lock, type LockMode } from '../lock.js';
import { PRIVATE_DIR_MODE } from '../private-modes.js';
import { ArchiveRegistry, type RegistryEntry } from './archive-registry.js';
import { chunkBuffers } from './buffer-pool.js';
import {
  type ChunkFile,
  ChunkFileWriter,
  chunkFileEquals,
  corruptChunk,
  decodeChunkFile,
  encodeChunkFile,
  parseChunkFile,
  readChunkFile,
} from './chunk-file.js';
import { CHUNK_HASH, type ChunkCheck } from './chunk-hash.js';
import { type Codec, type CodecName, codecByName } from './codec.js';
import type { ChunkStore, PutResult, ReadOptions, StoreEntry } from './contract.js';
import { PutOnce, unpooled } from './put-once.js';

export type { ChunkStore, PutResult, ReadOptions, StoreEntry } from './contract.js';

const HASH_RE = /^[0-9a-f]{64}$/;

const DAMAGED_SUFFIX = '.damaged';

export interface ChunkStoreOptions {
  /** Codec for new chunks (default zstd). Existing chunks record their own codec. */
  codec?: CodecName;
}

/**
 * A content-addressed store of chunks: `<root>/ab/<hash>` (see `HashAlgorithm`) (root is an archive's
 * `chunks/` or a shared directory), each a chunk file (see chunk-file.ts). Every read is checked against
 * the hash. The store keeps a registry of the archives using it (`<root>/.archives/`) for purge, and
 * `<root>/.purge.lock`.
 */
export class DirectoryChunkStore implements ChunkStore {
  /** The archive directory holds the revisions. */
  readonly catalog = null;
  readonly root: string;
  readonly codec: Codec;
  private readonly dirtyDirs = new Set<string>();
  private readonly puts = new PutOnce();
  private readonly knownDirs = new Set<string>();
  private readonly writer = new ChunkFileWriter();
  /** The archives using this store (`<root>/.archives/`). */
  private readonly registry: ArchiveRegistry;

  constructor(root: string, options: ChunkStoreOptions = {}) {
    this.root = resolve(root);
    this.codec = codecByName(options.codec ?? 'zstd');
    this.registry = new ArchiveRegistry(join(this.root, '.archives'));
  }

  get chunksDir(): string {
    return this.root;
  }

  get purgeLockPath(): string {
    return join(this.root, '.purge.lock');
  }

  pathOf(hash: string): string {
    return join(this.chunksDir, hash.slice(0, 2), hash);
  }

  async init(): Promise<void> {
    try {
      await mkdir(this.registry.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    } catch (error) {
      throw ioError(error, `creating chunk store ${this.root}`);
    }
  }

  /** Shared for backup/restore/verify, exclusive for purge. */
  lock(mode: LockMode, waitSeconds = 0): Promise<Lock> {
    return acquireLock(this.purgeLockPath, mode, {
      waitSeconds,
      busyMessage:
        mode === 'exclusive'
          ? `chunk store ${this.root} is in use by a backup, restore or verify; purge later`
          : `chunk store ${this.root} is being purged; try again when purge has finished`,
    });
  }

  async has(hash: string): Promise<boolean> {
    try {
      await stat(this.pathOf(hash));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Stores `data` under `hash` unless it is already there. With `rewrite`, an existing file is replaced
   * (used while the newest revision is distrusted, so damaged chunks get healed).
   */
  put(hash: string, data: Buffer, options: { rewrite?: boolean } = {}): Promise<PutResult> {
    return this.puts.put(hash, () => this.putNew(hash, data, options.rewrite ?? false));
  }

  private async putNew(hash: string, data: Buffer, rewrite: boolean): Promise<PutResult> {
    const path = this.pathOf(hash);
    if (!rewrite && (await this.has(hash))) return { written: 0 };
    const dir = join(this.chunksDir, hash.slice(0, 2));
    if (!this.knownDirs.has(dir)) {
      await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE }).catch((e) => {
        throw ioError(e, `creating ${dir}`);
      });
      this.knownDirs.add(dir);
    }
    const file = await encodeChunkFile(this.codec, data);
    const tmp = tempPathFor(path);
    try {
      await this.writer.write(tmp, file);
      await rename(tmp, path);
    } catch (error) {
      await rm(tmp, { force: true }).catch(() => {});
      throw ioError(error, `writing chunk ${hash}`);
    } finally {
      chunkBuffers.release(file);
    }
    this.dirtyDirs.add(dir);
    return { written: file.length };
  }

  /** Makes every chunk written so far durable in its directory. Call before committing a map. */
  async flush(): Promise<void> {
    const dirs = [...this.dirtyDirs];
    this.dirtyDirs.clear();
    await Promise.all(dirs.map((d) => fsyncDir(d)));
  }

  /** Reads, decompresses and verifies a chunk against its name, a hash by `algorithm`. */
  async get(hash: string, algorithm: ChunkCheck = CHUNK_HASH): Promise<Buffer> {
    return unpooled(await this.getPooled(hash, algorithm));
  }

  /**
   * Like `get`, but the result may be a pooled buffer (no copy) that the caller hands back with
   * `chunkBuffers.release` once nothing reads it any more. For streaming paths like restore and verify.
   */
  async getPooled(
    hash: string,
    algorithm: ChunkCheck = CHUNK_HASH,
    options: ReadOptions = {},
  ): Promise<Buffer> {
    try {
      return await this.readVerified(hash, algorithm, options);
    } catch (error) {
      // A damaged chunk file is moved aside, as backy 2.5 and PBS do: the next backup that meets its
      // content then writes it anew instead of trusting the damaged copy.
      if (isBackyError(error, 'CHUNK_CORRUPT')) await this.quarantine(hash).catch(() => {});
      throw error;
    }
  }

  private async readVerified(hash: string, algorithm: ChunkCheck, options: ReadOptions): Promise<Buffer> {
    const direct = options.bypassCache ?? false;
    return decodeChunkFile(hash, await this.readFile(hash, direct), algorithm, direct);
  }

  async equals(hash: string, expected: Buffer): Promise<boolean> {
    let chunk: ChunkFile;
    try {
      chunk = await this.readFile(hash, true);
    } catch (error) {
      if (isBackyError(error, 'CHUNK_CORRUPT')) return false;
      throw error;
    }
    return chunkFileEquals(chunk, expected);
  }

  /** Reads a chunk file and checks its header; `direct` reads it past the page cache where possible. */
  private async readFile(hash: string, direct = false): Promise<ChunkFile> {
    const path = this.pathOf(hash);
    let file: Buffer;
    try {
      file = await readChunkFile(path, direct);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        if (await exists(`${path}${DAMAGED_SUFFIX}`)) {
          throw corruptChunk(
            hash,
            `an earlier read found it damaged and moved it aside to ${path}${DAMAGED_SUFFIX}`,
            error,
          );
        }
        throw new BackyError('CHUNK_MISSING', `chunk ${hash} is missing from ${this.chunksDir}`, {
          cause: error,
        });
      }
      throw ioError(error, `reading chunk ${path}`);
    }
    return parseChunkFile(hash, file);
  }

  async entryOf(hash: string): Promise<StoreEntry | null> {
    const path = this.pathOf(hash);
    const info = await stat(path).catch(() => null);
    return info == null ? null : { hash, path, bytes: info.size };
  }

  async removeEntry(entry: StoreEntry): Promise<void> {
    await rm(entry.path, { force: true }).catch((error) => {
      throw ioError(error, `deleting ${entry.path}`);
    });
  }

  async delete(hash: string): Promise<void> {
    await unlink(this.pathOf(hash)).catch((error) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(error, `deleting chunk ${hash}`);
    });
  }

  /**
   * All stored hashes, with their file sizes; also yields stale temp files (hash null) and quarantined
   * chunk files (`damagedOf`) for clean-up.
   */
  async *entries(): AsyncIterable<StoreEntry> {
    let fans: string[];
    try {
      fans = await readdir(this.chunksDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw ioError(error, `listing ${this.chunksDir}`);
    }
    for (const fan of fans.sort()) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      const dir = join(this.chunksDir, fan);
      for (const name of await readdir(dir)) {
        const path = join(dir, name);
        const bytes = await stat(path).then(
          (s) => s.size,
          () => -1,
        );
        if (bytes < 0) continue;
        if (HASH_RE.test(name)) yield { hash: name, path, bytes };
        else if (name.endsWith(DAMAGED_SUFFIX) && HASH_RE.test(name.slice(0, -DAMAGED_SUFFIX.length)))
          yield { hash: null, damagedOf: name.slice(0, -DAMAGED_SUFFIX.length), path, bytes };
        else if (isTempName(name)) yield { hash: null, path, bytes };
      }
    }
  }

  /** Records that archive `id` at `archiveDir` uses this store (see `ArchiveRegistry.register`). */
  register(id: string, archiveDir: string): Promise<void> {
    return this.registry.register(id, archiveDir);
  }

  /** Removes a registry entry (by its file name, from `registeredArchives`). */
  unregisterEntry(entry: string): Promise<void> {
    return this.registry.unregister(entry);
  }

  /** The archives registered as users of this store: entry name, archive ID (null for old entries), path. */
  registeredArchives(): Promise<RegistryEntry[]> {
    return this.registry.entries();
  }

  /** Whether the store's directory exists. */
  exists(): Promise<boolean> {
    return exists(this.registry.dir);
  }

  /**
   * Moves a damaged chunk file aside (`<hash>.damaged`), so the next backup that meets its content
   * writes it anew instead of reusing it; purge removes the quarantined file once nothing references
   * the hash. Returns false if there was no file to move.
   */
  async quarantine(hash: string): Promise<boolean> {
    const path = this.pathOf(hash);
    try {
      await rename(path, `${path}${DAMAGED_SUFFIX}`);
      await fsyncDir(dirname(path)).catch(() => {});
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw ioError(error, `moving damaged chunk ${path} aside`);
    }
  }

  /** Of `hashes`, those whose chunk file is not in the store (missing or quarantined). */
  async missing(hashes: Iterable<string>): Promise<string[]> {
    const out: string[] = [];
    const all = [...hashes];
    for (let i = 0; i < all.length; i += 64) {
      const batch = all.slice(i, i + 64);
      const present = await Promise.all(batch.map((h) => this.has(h)));
      batch.forEach((h, j) => {
        if (!present[j]) out.push(h);
      });
    }
    return out;
  }
}
