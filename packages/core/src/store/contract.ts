import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { Backend, ObjectLock } from '../backend/contract.js';
import type { Lock, LockMode } from '../lock.js';
import type { RegistryEntry } from './archive-registry.js';
import type { ChunkCheck, HashAlgorithm } from './chunk-hash.js';
import type { Codec, CodecName } from './codec.js';

// The store contract: what an archive needs from the place its chunks (and, for a remote store, its
// revisions) live. One implementation (`Repository`, repository/) serves it over any backend: the local
// directory (`DirectoryBackend`, the default) and S3-compatible object storage (`@backy/store-s3`). One
// conformance suite (`testChunkStore` in `@backy/core/testing`) runs against the store over each
// backend, and one (`testBackend`) against each backend.

export interface PutResult {
  /** Bytes written to the store (0 when the chunk already existed). */
  written: number;
}

export interface ReadOptions {
  /**
   * Read past the page cache where the driver can (O_DIRECT): for streaming every chunk once (restore,
   * verify), which would otherwise evict what the server has cached. Drivers without a cache ignore it.
   */
  bypassCache?: boolean;
}

export interface StoreEntry {
  /** The chunk's hash; null for an object that is not a chunk (temp or quarantined). */
  hash: string | null;
  /** For a quarantined chunk: the hash it was stored under. */
  damagedOf?: string;
  /** Where it is: a file path, or an object key. */
  path: string;
  /** Stored bytes. */
  bytes: number;
}

/**
 * How a store names the chunks of new revisions when not by the plain hash `CHUNK_HASH`: an encrypted
 * store names them by a keyed hash, which only the key's holder can compute.
 */
export interface ChunkNaming {
  /** The hash new maps record (`keyed-blake3`). */
  readonly algorithm: HashAlgorithm;
  /** The name of a chunk with content `data`. */
  name(data: Uint8Array): Promise<string>;
}

/**
 * A content-addressed store of chunks; every read is checked against the chunk's hash. Chunks are named
 * by hashes (64 hex digits); a layer above a store (encryption) may keep objects of its own under other
 * names, which are put and read like chunks but never listed by `entries`, so never purged.
 */
export interface ChunkStore {
  /** Where the store is, for messages: a directory, or `s3://bucket/prefix`. */
  readonly root: string;
  /** Codec for new chunks; stored chunks record their own. */
  readonly codec: Codec;
  /** How new chunks are named, when not by `CHUNK_HASH` (see `ChunkNaming`). */
  readonly naming?: ChunkNaming;
  /**
   * The revisions' metadata when it lives in the store too (remote stores: a new host restores from the
   * store alone), or null when the archive directory is where revisions live (the local directory).
   */
  readonly catalog: RevisionCatalog | null;

  /** Creates the store (directory, or checks the bucket); idempotent. */
  init(): Promise<void>;
  /** Whether the store has been created. */
  exists(): Promise<boolean>;
  /**
   * Shared for backup, restore and verify, exclusive for purge: purge never deletes a chunk a running
   * backup may still reference. Busy: a LOCKED BackyError, after waiting up to `waitSeconds`.
   */
  lock(mode: LockMode, waitSeconds?: number): Promise<Lock>;

  has(hash: string): Promise<boolean>;
  /** Of `hashes`, those not in the store (missing or quarantined). */
  missing(hashes: Iterable<string>): Promise<string[]>;
  /**
   * Stores `data` under `hash` unless it is there already; with `rewrite`, replaces it (while the newest
   * revision is distrusted, so damaged chunks get healed). Each chunk appears whole or not at all.
   */
  put(hash: string, data: Buffer, options?: { rewrite?: boolean }): Promise<PutResult>;
  /** Makes every chunk put so far durable. Called before a map that references them is committed. */
  flush(): Promise<void>;
  /**
   * Reads and verifies a chunk against its name (a hash by `algorithm`; `sealed`: the bytes as stored,
   * unverified, for a layer above that verifies them, see `ChunkCheck`): CHUNK_MISSING, CHUNK_CORRUPT.
   */
  get(hash: string, algorithm?: ChunkCheck): Promise<Buffer>;
  /** Like `get`, but the result may be a pooled buffer to hand back with `chunkBuffers.release`. */
  getPooled(hash: string, algorithm?: ChunkCheck, options?: ReadOptions): Promise<Buffer>;
  /**
   * Whether the stored chunk holds exactly `expected` (read back after writing it, so equal bytes prove
   * the stored copy). A missing chunk throws CHUNK_MISSING; a damaged one is false.
   */
  equals(hash: string, expected: Buffer): Promise<boolean>;
  /**
   * Moves a damaged chunk aside, so the next backup that meets its content writes it anew; one that
   * checks out against `algorithm` (default BLAKE3) when read again (rewritten meanwhile) is kept.
   */
  quarantine(hash: string, algorithm?: ChunkCheck): Promise<boolean>;
  delete(hash: string): Promise<void>;
  /** Every stored chunk, plus leftovers (temp objects, quarantined chunks) for purge. */
  entries(): AsyncIterable<StoreEntry>;
  /** The entry of one stored chunk (as `entries` yields it), or null when it is not stored. */
  entryOf(hash: string): Promise<StoreEntry | null>;
  /**
   * Deletes what `entries` yielded (purge). An object the store's Object Lock still retains: a RETAINED
   * BackyError with `retainUntil` (ms) set, and nothing deleted.
   */
  removeEntry(entry: StoreEntry): Promise<void>;

  /** The store's Object Lock (revisions and chunks are written retained), or null/absent: none. */
  readonly objectLock?: ObjectLock | null;
  /**
   * Extends chunk `hash`'s retention to at least `until` (ms): its retain-until now, or null when the
   * chunk is absent. Only with `objectLock`.
   */
  retain?(hash: string, until: number): Promise<number | null>;
  /** Chunk `hash`'s retain-until (ms), null when not retained, undefined when absent. Only with `objectLock`. */
  retainedUntil?(hash: string): Promise<number | null | undefined>;

  /** Records that archive `id` at `archiveDir` uses this store (purge reads every user's maps). */
  register(id: string, archiveDir: string): Promise<void>;
  unregisterEntry(entry: string): Promise<void>;
  /** The local archives registered as users of this store (none for a remote store: its catalog counts). */
  registeredArchives(): Promise<RegistryEntry[]>;
}

/** The two files of a revision, as the archive directory holds them: `<id>.rev` and `<id>.map`. */
export type RevisionFileKind = 'rev' | 'map';

/**
 * Fleet mode's fencing token of an archive (docs/fleet.md): in the archive directory's `fleet-fence`, and
 * for a remote store also in the store (`locks/fence`), where every server's backups see it.
 */
export interface Fence {
  /** The Consul lock's ModifyIndex when it was taken: higher for every later holder. */
  token: number;
  /** The fleet server that took it. */
  server: string;
  /** When it was raised (ISO time): for messages only. */
  at: string;
}

/**
 * Revision metadata kept in a remote store: each revision's `.rev` and `.map` as opaque bytes, written
 * atomically (map first, then `.rev`: a revision exists once its `.rev` does).
 */
export interface RevisionCatalog {
  /** The IDs of the revisions whose `.rev` is in the store, each with a version (e.g. an ETag). */
  list(): Promise<Map<string, string>>;
  /** A revision file, or null when it is not there. */
  read(id: string, kind: RevisionFileKind): Promise<Buffer | null>;
  /** Writes a revision file atomically; resolves with its new version. */
  write(
    id: string,
    kind: RevisionFileKind,
    data: Buffer,
    options?: { retainUntil?: number },
  ): Promise<string>;
  /** Deletes a revision: its `.rev` first (it disappears at once), then its map. */
  delete(id: string): Promise<void>;
  /**
   * A revision file's retain-until (ms), null when not retained, undefined when absent. Only on a store
   * with Object Lock (as `ChunkStore.retainedUntil`).
   */
  retainedUntil?(id: string, kind: RevisionFileKind): Promise<number | null | undefined>;
  /** Extends a revision file's retention to at least `until` (ms), as `ChunkStore.retain`. */
  retain?(id: string, kind: RevisionFileKind, until: number): Promise<number | null>;
  /**
   * The one writer of the archive across hosts: a backup (or a command changing revisions) holds it for
   * its whole run. Busy: a LOCKED BackyError that says who holds it. `fence`: the fleet token the
   * backup commits under; a holder that recorded a lower one cannot commit anymore (its fence check
   * fails), so its lease is taken over at once instead of after a whole lease (docs/fleet.md).
   */
  lockWriter(options?: { fence?: number }): Promise<Lock>;
  /** The ID of the archive the store belongs to, or null while unclaimed. */
  archiveId(): Promise<string | null>;
  /** Claims an unclaimed store for archive `archiveId`; a store of another archive: CONFIG_INVALID. */
  claim(archiveId: string): Promise<void>;
  /** The store's fleet fence, or null when no fleet backup ever raised one. */
  fence(): Promise<Fence | null>;
  /**
   * Raises the store's fence to `token` for `server`, atomically and never downwards: null when it holds
   * `token` now, else the higher fence that refuses it (a newer holder took the job).
   */
  raiseFence(token: number, server: string): Promise<Fence | null>;
}

/** Where a driver's store is configured: `store:` of the archive config without `type` and `codec`. */
export interface StoreDriverContext {
  /** The archive directory (relative paths in options are relative to it). */
  archiveDir: string;
  /** `archive-config-path: store` for error messages. */
  where: string;
  /** The codec of new chunks (the repository compresses; a backend stores bytes as it gets them). */
  codec: CodecName;
  /**
   * Opened for a command that deletes (expire, forget, purge): with the store's admin credentials where
   * it has separate ones (an append-only host's store).
   */
  admin?: boolean;
}

/** A store driver: `store: {type: NAME, ...options}` in an archive config opens it. */
export interface StoreDriver<Options = Record<string, unknown>> {
  readonly type: string;
  /** Validates the options (the `store:` mapping without `type` and `codec`). */
  readonly optionsSchema: StandardSchemaV1<unknown, Options>;
  /**
   * The backend of the store the options name: a handful of byte-level methods (backend/contract.ts).
   * Compression, encryption, checks, quarantine, leases and the revision catalog are backy's, above it.
   */
  open(options: Options, context: StoreDriverContext): Backend;
}

/**
 * Store drivers by `store.type`, as the host (CLI, scheduler) wires them in: a driver, or a function that loads one, so that a driver and its
 * dependencies (the S3 SDK: ~45 MB of RSS and ~0.2 s of start-up) load only for an archive that uses it.
 * `directory` is built in unless the table names it.
 */
export type StoreDriverTable = Readonly<Record<string, StoreDriver<any> | (() => Promise<StoreDriver<any>>)>>;

/**
 * The store drivers a host offers: a table, or a function that loads the driver of any `store.type`
 * (`directory` included) and throws its own error for one it cannot load (the CLI: built-ins, packages,
 * module paths, as for sources).
 */
export type StoreDrivers = StoreDriverTable | ((type: string) => Promise<StoreDriver<unknown>>);
