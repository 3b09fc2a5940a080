import { mkdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Backend } from '../backend/contract.js';
import { removeVersion } from '../backend/remove-version.js';
import { chunkBuffers } from '../buffer-pool.js';
import { BackyError, ioError, isBackyError } from '../errors.js';
import { exists, isTempName } from '../fs-util.js';
import { acquireLock, type Lock, type LockMode } from '../lock.js';
import { PRIVATE_DIR_MODE } from '../private-modes.js';
import { ArchiveRegistry, type RegistryEntry } from '../store/archive-registry.js';
import {
  type ChunkFile,
  chunkFileEquals,
  corruptChunk,
  decodeChunkFile,
  encodeChunkFile,
  parseChunkFile,
} from '../store/chunk-file.js';
import { CHUNK_HASH, type ChunkCheck } from '../store/chunk-hash.js';
import { type Codec, type CodecName, codecByName } from '../store/codec.js';
import type {
  ChunkNaming,
  ChunkStore,
  PutResult,
  ReadOptions,
  RevisionCatalog,
  StoreEntry,
} from '../store/contract.js';
import { KEYED_HASH } from '../store/encryption.js';
import type { StoreKey } from '../store/key-file.js';
import { PutOnce, unpooled } from '../store/put-once.js';
import { MARKER, newMarker, ObjectCatalog } from './catalog.js';
import { lockStore, where } from './leases.js';
import { KEY_CHECK, SealedCatalog, Sealing } from './sealing.js';

const HASH_RE = /^[0-9a-f]{64}$/;
const DAMAGED_SUFFIX = '.damaged';
/** A chunk object's name below the chunks prefix: `ab/<name>`. */
const FANNED_RE = /^[0-9a-f]{2}\/([^/]+)$/;
/** `missing` of more hashes than this lists a remote store instead of asking for each. */
const LIST_ABOVE = 32;

export interface RepositoryOptions {
  /** Codec for new chunks (default zstd). Stored chunks record their own. */
  codec?: CodecName;
  /** Seals every object with this key (see sealing.ts); null or absent: plaintext. */
  key?: StoreKey | null;
}

/**
 * The one `ChunkStore`, over any backend: a chunk's data is compressed into a chunk file
 * (store/chunk-file.ts), sealed when the store is encrypted, and saved once under `ab/<hash>`; every read
 * is opened, decompressed and checked against its name, and a chunk found damaged is moved aside
 * (`<hash>.damaged`) so that the next backup writing its content heals it. Backends with a local
 * directory hold the chunks at their root, take flock(2) locks (`.purge.lock`) and register the archives
 * using them (`.archives/`); the others keep chunks under `chunks/`, the revisions (catalog.ts) and lease
 * objects (leases.ts) themselves.
 */
export class Repository implements ChunkStore {
  readonly root: string;
  readonly codec: Codec;
  readonly catalog: RevisionCatalog | null;
  readonly naming?: ChunkNaming;
  private readonly puts = new PutOnce();
  private readonly local: string | null;
  private readonly registry: ArchiveRegistry | null;
  private readonly prefix: string;
  private readonly sealing: Sealing | null;
  /** The catalog below the sealing step (the key check looks there without checking the key). */
  private readonly objects: ObjectCatalog | null;

  constructor(
    readonly backend: Backend,
    options: RepositoryOptions = {},
  ) {
    this.root = backend.location;
    this.codec = codecByName(options.codec ?? 'zstd');
    this.local = backend.capabilities.localPath;
    this.registry = this.local == null ? null : new ArchiveRegistry(join(this.local, '.archives'));
    this.prefix = this.local == null ? 'chunks/' : '';
    const key = options.key ?? null;
    this.sealing =
      key == null
        ? null
        : new Sealing(key, {
            root: this.root,
            readKeyCheck: () => this.readKeyCheck(),
            writeKeyCheck: (object) => this.writeKeyCheck(object),
            holdsData: () => this.holdsData(),
          });
    if (this.sealing != null) this.naming = this.sealing.naming;
    this.objects = this.local == null ? new ObjectCatalog(backend) : null;
    this.catalog =
      this.objects == null || this.sealing == null
        ? this.objects
        : new SealedCatalog(this.objects, this.sealing, this.root);
  }

  /** The object name of chunk `hash`. */
  protected nameOf(hash: string): string {
    return `${this.prefix}${hash.slice(0, 2)}/${hash}`;
  }

  /** Where object `name` is, for messages and `StoreEntry.path`: a file path, or a key. */
  private pathOfObject(name: string): string {
    return this.local == null ? name : join(this.local, ...name.split('/'));
  }

  async init(): Promise<void> {
    await this.backend.init?.();
    if (this.registry != null) {
      await mkdir(this.registry.dir, { recursive: true, mode: PRIVATE_DIR_MODE }).catch((error) => {
        throw ioError(error, `creating chunk store ${this.root}`);
      });
    } else await this.backend.saveOnce(MARKER, newMarker());
    await this.sealing?.claim();
  }

  async exists(): Promise<boolean> {
    if (this.registry != null) return exists(this.registry.dir);
    return (await this.backend.stat(MARKER)) != null;
  }

  /** Shared for backup, restore and verify, exclusive for purge. */
  lock(mode: LockMode, waitSeconds = 0): Promise<Lock> {
    if (this.local == null) return lockStore(this.backend, mode, waitSeconds);
    return acquireLock(join(this.local, '.purge.lock'), mode, {
      waitSeconds,
      busyMessage:
        mode === 'exclusive'
          ? `chunk store ${this.root} is in use by a backup, restore or verify; purge later`
          : `chunk store ${this.root} is being purged; try again when purge has finished`,
    });
  }

  async has(hash: string): Promise<boolean> {
    await this.sealing?.check();
    return (await this.backend.stat(this.nameOf(hash))) != null;
  }

  /**
   * A few hashes: a stat each, so many at once. Many on a remote store (a parent's whole map): one
   * listing of `chunks/`, since a request per chunk would be the bulk of an incremental backup's time
   * (measured on S3: 2 × 256 HEADs for a 1 GiB image).
   */
  async missing(hashes: Iterable<string>): Promise<string[]> {
    await this.sealing?.check();
    const all = [...hashes];
    if (this.local == null && all.length > LIST_ABOVE) {
      const stored = new Set<string>();
      for await (const entry of this.entries()) if (entry.hash != null) stored.add(entry.hash);
      return all.filter((h) => !stored.has(h));
    }
    const present = await mapLimit(all, this.backend.capabilities.concurrency, async (h) => {
      return (await this.backend.stat(this.nameOf(h))) != null;
    });
    return all.filter((_, i) => !present[i]);
  }

  /**
   * Stores `data` under `hash` unless it is already there. With `rewrite`, an existing object is
   * replaced (used while the newest revision is distrusted, so damaged chunks get healed).
   */
  put(hash: string, data: Buffer, options: { rewrite?: boolean } = {}): Promise<PutResult> {
    return this.puts.put(hash, () => this.putNew(hash, data, options.rewrite ?? false));
  }

  private async putNew(hash: string, data: Buffer, rewrite: boolean): Promise<PutResult> {
    await this.sealing?.claim();
    const name = this.nameOf(hash);
    if (!rewrite && (await this.backend.stat(name)) != null) {
      // Perhaps another backup's chunk, not yet fsynced: this one's commit must not outrun it.
      this.backend.relyOn?.(name);
      return { written: 0 };
    }
    const file = await encodeChunkFile(this.codec, data);
    const stored = this.sealing == null ? file : this.sealing.sealChunk(hash, file);
    try {
      const saved = rewrite
        ? await this.backend.save(name, stored)
        : await this.backend.saveOnce(name, stored);
      return { written: saved == null ? 0 : stored.length };
    } finally {
      chunkBuffers.release(stored);
    }
  }

  /** Makes every chunk put so far durable. Call before committing a map. */
  async flush(): Promise<void> {
    await this.backend.flush?.();
  }

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
    await this.sealing?.check();
    const direct = options.bypassCache ?? false;
    try {
      const file = await this.readFile(hash, direct);
      const key = algorithm === KEYED_HASH ? this.sealing?.key.nameKey : undefined;
      return await decodeChunkFile(hash, file, algorithm, direct, key);
    } catch (error) {
      // A damaged chunk is moved aside, as backy 2.5 and PBS do: the next backup that meets its
      // content then writes it anew instead of trusting the damaged copy.
      if (isBackyError(error, 'CHUNK_CORRUPT')) await this.quarantine(hash, algorithm).catch(() => {});
      throw error;
    }
  }

  /**
   * Whether the stored chunk holds exactly `expected` (read back after writing it, so equal bytes prove
   * the stored copy). A missing chunk throws CHUNK_MISSING; a damaged one is false.
   */
  async equals(hash: string, expected: Buffer): Promise<boolean> {
    await this.sealing?.check();
    let chunk: ChunkFile;
    try {
      chunk = await this.readFile(hash, true);
    } catch (error) {
      if (isBackyError(error, 'CHUNK_CORRUPT')) return false;
      throw error;
    }
    return chunkFileEquals(chunk, expected);
  }

  /** Reads a chunk's object, opens its seal, and checks its chunk file's header. */
  private async readFile(hash: string, direct: boolean): Promise<ChunkFile> {
    const name = this.nameOf(hash);
    const stored = await this.backend.load(name, { pooled: true, bypassCache: direct });
    if (stored == null) {
      if ((await this.backend.stat(`${name}${DAMAGED_SUFFIX}`)) != null) {
        throw corruptChunk(
          hash,
          `an earlier read found it damaged and moved it aside to ${this.where(name)}${DAMAGED_SUFFIX}`,
        );
      }
      throw new BackyError('CHUNK_MISSING', `chunk ${hash} is missing from ${this.root}`);
    }
    return parseChunkFile(hash, this.sealing == null ? stored : this.sealing.openChunk(hash, stored));
  }

  private where(name: string): string {
    return this.local == null ? where(this.backend, name) : this.pathOfObject(name);
  }

  /**
   * Moves a damaged chunk aside (`<hash>.damaged`), so the next backup that meets its content writes it
   * anew instead of reusing it; purge removes the quarantined object once nothing references the hash.
   * A concurrent backup may have rewritten the chunk since the read that failed: the object is read and
   * checked again, and only the version found damaged is removed (after its copy aside is saved), so a
   * good copy is never taken away. Returns false if nothing was moved.
   */
  async quarantine(hash: string, algorithm: ChunkCheck = CHUNK_HASH): Promise<boolean> {
    const name = this.nameOf(hash);
    const seen = await this.backend.stat(name);
    if (seen == null) return false;
    const bytes = await this.backend.load(name);
    if (bytes == null || (await this.intact(hash, bytes, algorithm))) return false;
    await this.backend.save(`${name}${DAMAGED_SUFFIX}`, bytes);
    return removeVersion(this.backend, name, seen.version);
  }

  /** Whether stored object `bytes` opens and decodes to content matching `hash`. */
  private async intact(hash: string, bytes: Buffer, algorithm: ChunkCheck): Promise<boolean> {
    try {
      const file = parseChunkFile(hash, this.sealing == null ? bytes : this.sealing.openChunk(hash, bytes));
      const key = algorithm === KEYED_HASH ? this.sealing?.key.nameKey : undefined;
      chunkBuffers.release(await decodeChunkFile(hash, file, algorithm, false, key));
      return true;
    } catch (error) {
      if (isBackyError(error, 'CHUNK_CORRUPT')) return false;
      throw error;
    }
  }

  delete(hash: string): Promise<void> {
    return this.backend.remove(this.nameOf(hash));
  }

  /**
   * Every stored chunk with its size; also quarantined chunks (`damagedOf`) and, in a local directory,
   * stale temp files (hash null) for clean-up. Anything else is not provably backy's: never yielded, so
   * never deleted.
   */
  async *entries(): AsyncIterable<StoreEntry> {
    for await (const item of this.backend.list(this.prefix)) {
      const match = FANNED_RE.exec(item.name.slice(this.prefix.length));
      if (match == null) continue;
      const name = match[1]!;
      const path = this.pathOfObject(item.name);
      if (HASH_RE.test(name)) yield { hash: name, path, bytes: item.bytes };
      else if (name.endsWith(DAMAGED_SUFFIX) && HASH_RE.test(name.slice(0, -DAMAGED_SUFFIX.length)))
        yield { hash: null, damagedOf: name.slice(0, -DAMAGED_SUFFIX.length), path, bytes: item.bytes };
      else if (this.local != null && isTempName(name)) yield { hash: null, path, bytes: item.bytes };
    }
  }

  get objectLock() {
    return this.backend.objectLock ?? null;
  }

  async retain(hash: string, until: number): Promise<number | null> {
    if (this.backend.retain == null)
      throw new BackyError('STORE_INVALID', `${this.root}: the backend cannot retain objects (Object Lock)`);
    return this.backend.retain(this.nameOf(hash), until);
  }

  async retainedUntil(hash: string): Promise<number | null | undefined> {
    const info = await this.backend.stat(this.nameOf(hash));
    return info == null ? undefined : (info.retainUntil ?? null);
  }

  async entryOf(hash: string): Promise<StoreEntry | null> {
    const name = this.nameOf(hash);
    const info = await this.backend.stat(name);
    return info == null ? null : { hash, path: this.pathOfObject(name), bytes: info.bytes };
  }

  async removeEntry(entry: StoreEntry): Promise<void> {
    const name = this.local == null ? entry.path : relative(this.local, entry.path).split(sep).join('/');
    await this.backend.remove(name);
  }

  /** Records that archive `id` at `archiveDir` uses this store; a remote store belongs to one archive. */
  async register(id: string, archiveDir: string): Promise<void> {
    if (this.registry != null) await this.registry.register(id, archiveDir);
    else await this.catalog!.claim(id);
  }

  /** Removes a registry entry (by its file name, from `registeredArchives`). */
  async unregisterEntry(entry: string): Promise<void> {
    await this.registry?.unregister(entry);
  }

  /** The local archives registered as users of this store (none for a remote store: its catalog counts). */
  async registeredArchives(): Promise<RegistryEntry[]> {
    return this.registry?.entries() ?? [];
  }

  private async readKeyCheck(): Promise<Buffer | null> {
    const name = this.nameOf(KEY_CHECK);
    const stored = await this.backend.load(name);
    if (stored == null) return null;
    // In the frame of a chunk file of codec none, as every chunk of an encrypted store.
    const { codec, payload, rawLength } = parseChunkFile(KEY_CHECK, stored);
    if (codec.id !== 0 || payload.length !== rawLength)
      throw corruptChunk(KEY_CHECK, 'not an encrypted chunk');
    return payload;
  }

  private async writeKeyCheck(object: Buffer): Promise<void> {
    const file = await encodeChunkFile(codecByName('none'), object);
    try {
      await this.backend.saveOnce(this.nameOf(KEY_CHECK), file);
    } finally {
      chunkBuffers.release(file);
    }
  }

  /** Whether the store holds any chunk or revision (then a missing key check is no new store). */
  private async holdsData(): Promise<boolean> {
    for await (const _ of this.entries()) return true;
    return ((await this.objects?.list())?.size ?? 0) > 0;
  }
}

/** `work` on every item, `limit` at a time, the results in order. */
async function mapLimit<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(Math.max(1, limit), items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await work(items[i]!);
      }
    }),
  );
  return out;
}
