/**
 * The backend contract: what a store driver implements, and all it implements. A backend moves bytes
 * under names (`ab/<hash>`, `revisions/<id>.rev`, `locks/writer`, …) and knows nothing of chunks,
 * codecs, keys or locks: the repository above it (../repository/) compresses, encrypts, checks every
 * read, moves damaged chunks aside, keeps the revision catalog and takes the locks, once for every
 * backend (restic's `Backend` below its `repository`; PBS's datastore gets an already-encoded blob).
 *
 * Six methods and the capabilities are required; the optional ones make a backend faster or safer where
 * its medium allows, and the repository does without them otherwise. `testBackend` in
 * `@backy/core/testing` holds a backend to this contract.
 */

/** One stored object, as `stat` and `list` see it. */
export interface BackendObject {
  /** Its name, relative to the backend's root (`/`-separated). */
  name: string;
  /** Stored bytes. */
  bytes: number;
  /**
   * What changes whenever the object is written (an S3 ETag; for a file: inode, size and mtime): a
   * conditional `save` replaces the object only while it still has this version.
   */
  version: string;
  /**
   * Until when the store refuses to delete or overwrite this version (S3 Object Lock), milliseconds
   * since the epoch; absent or null: not retained. Only `stat` tells it (a listing does not).
   */
  retainUntil?: number | null;
}

/**
 * Object Lock (WORM) on the store: revisions and the chunks they reference are written with a
 * retain-until date, and neither the store's users nor an attacker holding their credentials can
 * delete them or shorten it before then (docs/immutable-backups.md).
 */
export interface ObjectLock {
  /** `governance`: a user with the bypass permission may still delete; `compliance`: nobody may. */
  readonly mode: 'governance' | 'compliance';
  /** Added to when expiry would first remove a revision (milliseconds). */
  readonly marginMs: number;
  /**
   * A chunk's retention is extended to the next multiple of this (milliseconds since the epoch), so
   * that the revisions of one such period need no request for the chunks they share.
   */
  readonly stepMs: number;
  /** Retention of a revision whose tags no rule expires (manual ones, `keep: 0`), unless given (ms). */
  readonly manualMs: number;
}

export interface BackendCapabilities {
  /**
   * `saveOnce` is an atomic create-if-absent and `save` with `ifVersion` an atomic compare-and-swap: of
   * two hosts racing for one name exactly one wins (S3 `If-None-Match: *` / `If-Match`, `link(2)`).
   * `'one-host'`: atomic only among the processes of one host (a local file system), so the store must
   * be used from one host alone. The lease objects that lock a store without a local directory rely on
   * it: over a backend saying false the repository refuses to lock (and so to back up). (The directory
   * backend's `ifVersion` is atomic within one process only; its store locks with flock(2) instead.)
   */
  readonly conditionalWrites: boolean | 'one-host';
  /** `move` is atomic (a rename): a reader sees the object under one name or the other, never both or none. */
  readonly atomicMove: boolean;
  /**
   * The local directory holding the store, when it is one: its locks are then flock(2) files in it, its
   * users are registered in `.archives/` and the revisions live in each archive's directory. Null for a
   * remote store, which keeps revisions (`revisions/`), leases (`locks/`) and a marker itself.
   */
  readonly localPath: string | null;
  /** Requests worth having in flight at once (1 for a backend that serialises anyway). */
  readonly concurrency: number;
}

export interface LoadOptions {
  /** Only these bytes of the object (a short read at its end is no error). */
  range?: { offset: number; length: number };
  /**
   * Into a buffer of the chunk pool (`chunkBuffers`) where it fits, for the caller to hand back with
   * `chunkBuffers.release`: no garbage per chunk read.
   */
  pooled?: boolean;
  /** Past the page cache (O_DIRECT), where the backend has one: for reading every chunk once (restore, verify). */
  bypassCache?: boolean;
}

export interface SaveOptions {
  /** Replace the object only while it has this version (see `BackendObject.version`); else null. */
  ifVersion?: string;
  /** With Object Lock: the new version is retained until then (ms since the epoch). */
  retainUntil?: number;
}

/**
 * A place that stores named objects. Every write is atomic: a reader sees the whole new object or the
 * old one (or none), never a part; a write that resolved is durable once `flush` (if any) resolved.
 * Failures are BackyErrors of one line naming the object and the place (IO, NO_SPACE, CONFIG_INVALID for
 * wrong credentials); an absent object is no failure (null, or nothing to do).
 */
export interface Backend {
  /** Where the backend is, for messages: a directory, or `s3://bucket/prefix`. */
  readonly location: string;
  readonly capabilities: BackendCapabilities;

  /** Creates `name` with `data` unless it exists: its new state, or null when it was there already. */
  saveOnce(
    name: string,
    data: Uint8Array,
    options?: Pick<SaveOptions, 'retainUntil'>,
  ): Promise<BackendObject | null>;
  /** Creates or replaces `name`; with `ifVersion`, only over that version (else null). */
  save(name: string, data: Uint8Array, options?: SaveOptions): Promise<BackendObject | null>;
  /** The object's bytes, or null when there is none. */
  load(name: string, options?: LoadOptions): Promise<Buffer | null>;
  /** The object's size and version, or null when there is none. */
  stat(name: string): Promise<BackendObject | null>;
  /** Every object whose name starts with `prefix`, in name order; the backend's own temp files included. */
  list(prefix: string): AsyncIterable<BackendObject>;
  /** Deletes `name`; an absent one is no error. */
  remove(name: string): Promise<void>;

  /**
   * Deletes `name` only while it has `version`: true when it did, false when the object is absent or
   * has another version. Atomic where the medium allows (else as narrow as a stat and a delete); without
   * it the repository stats, compares and removes. Lease objects are released with it, so a holder never
   * deletes the lease of a host that took it over, and quarantine removes only the copy it found damaged.
   */
  removeVersion?(name: string, version: string): Promise<boolean>;
  /** Makes the place ready (a directory created, a bucket checked); idempotent. */
  init?(): Promise<void>;
  /** Moves `from` to `to` (replacing it): true, or false when `from` is absent. Without it: load, save, remove. */
  move?(from: string, to: string): Promise<boolean>;
  /** Makes every write so far durable (fsync of the directories written to). Without it: writes are durable when they resolve. */
  flush?(): Promise<void>;
  /**
   * The caller will commit a reference to `name`, which it found by `stat` rather than wrote: perhaps
   * another writer's object, not durable yet. The next `flush` makes it durable too. Without it: an
   * object is durable once `stat` sees it.
   */
  relyOn?(name: string): void;

  /** Object Lock on this store (and so a versioned one), as configured; absent or null: none. */
  readonly objectLock?: ObjectLock | null;
  /**
   * The credentials may write but not delete (an append-only host): leases are released by a
   * conditional overwrite, and `remove` refuses in one line naming the admin credentials.
   */
  readonly appendOnly?: boolean;
  /**
   * Extends `name`'s retention to at least `until` (never shortens it): the retain-until it has now,
   * or null when the object is absent. Required with `objectLock`.
   */
  retain?(name: string, until: number): Promise<number | null>;
}
