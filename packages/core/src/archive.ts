import {
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
} from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { stringify } from 'yaml';
import { type ArchiveConfig, archiveConfigSchema, loadArchiveConfig, validateConfig } from './config.js';
import { BackyError, ioError, isBackyError } from './errors.js';
import { exists, fsyncDir, isTempName, mayExist, tempPathFor, writeFileAtomic } from './fs-util.js';
import { isRevisionId, newRevisionId } from './ids.js';
import { ChunkedRevisionReader, ChunkedRevisionWriter } from './layout/chunked.js';
import { ImagesRevisionReader, ImagesRevisionWriter, supportsReflink } from './layout/images.js';
import { LegacyChunkedReader, readLegacyMapping } from './legacy/chunked.js';
import { impliedImagesLayout } from './legacy/layout.js';
import { isLegacyRevision, legacyRevisionText } from './legacy/rev-file.js';
import { acquireLock, type Lock } from './lock.js';
import { PRIVATE_DIR_MODE } from './private-modes.js';
import {
  isComplete,
  type Revision,
  type RevisionData,
  readRevisionFile,
  writeRevisionFile,
} from './revision.js';
import type { RevisionReader, RevisionWriter } from './revision-io.js';
import { resolveRevisionSpec, resolveSingleRevision } from './revision-spec.js';
import { chunkBuffers } from './store/buffer-pool.js';
import { CatalogMirror } from './store/catalog-mirror.js';
import { CHUNK_HASH, hashChunk, isAllZero } from './store/chunk-hash.js';
import { ChunkMap } from './store/chunk-map.js';
import type { ChunkStore, StoreDrivers } from './store/contract.js';
import { isEncryptedStore } from './store/encryption.js';
import { openStore } from './store/open-store.js';

export interface ArchiveOptions {
  /** Store drivers besides the local directory, by type (the CLI wires in `s3`). */
  stores?: StoreDrivers;
  /**
   * Called, instead of failing, when a remote store cannot be reached (an IO error) while the archive
   * is opened: the archive then has the directory's copies of its revisions only, possibly out of date
   * (for `status`). Unset: opening fails.
   */
  onStoreUnreachable?: (error: BackyError) => void;
}

export interface InitOptions extends ArchiveOptions {
  /**
   * Make this directory the archive whose revisions the store holds already (a new host, or a directory
   * rebuilt from its config); without it `init` refuses a store that holds another archive's history.
   */
  attach?: boolean;
  /** Runs with the archive and its opened store before anything is written; throwing stops `init`. */
  check?: (archive: Archive) => Promise<void>;
}

export const CONFIG_FILE = 'config';
export const LOG_FILE = 'backy.log';
const REV_SUFFIX = '.rev';
const MAP_SUFFIX = '.map';
/**
 * Written (atomically) before a backup writes anything of revision `<id>`, removed after its `.rev`:
 * the proof that files named `<id>` without a `.rev` are backy's own leftovers and may be removed.
 */
const PENDING_SUFFIX = '.pending';
/** The archive's identity, kept across moves: the store's registry knows archives by it. */
export const ARCHIVE_ID_FILE = 'archive-id';
/** Seconds a short change of revision files waits for another one to finish. */
const REVISIONS_LOCK_WAIT = 120;

/** The symlink to the newest revision's image file in the `images` layout. */
export const LAST_LINK = 'last';

/** A writer for a new revision, whatever the layout: seal makes it durable, abort leaves nothing. */
export interface LayoutWriter extends RevisionWriter {
  /** Hashes of the chunks this backup wrote anew (what a source's quick verification reads back). */
  readonly freshChunks: ReadonlySet<string>;
  seal(): Promise<ChunkMap>;
  abort(): Promise<void>;
}

/** A `.rev` that does not parse or validate: shown, kept with its data, never used. */
export interface DamagedRevision {
  id: string;
  file: string;
  problem: string;
}

export interface ArchiveScan {
  /** Complete revisions, oldest first. */
  complete: Revision[];
  /** `.rev` files backy cannot read; their maps and image files stay, and purge keeps their chunks. */
  damaged: DamagedRevision[];
  /** Revisions a backup started (its `.pending` marker is there) and never committed. */
  interrupted: string[];
  /** Maps and image files without a `.rev` and without backy's marker: not provably leftovers, kept. */
  orphans: string[];
}

/** One job's directory: its config, revisions, chunk maps, log and (by default) its chunk store. */
export class Archive {
  readonly path: string;
  readonly config: ArchiveConfig;
  readonly store: ChunkStore;
  /** For a store that keeps the revisions (a remote one): the directory's copies of them. */
  private readonly mirror: CatalogMirror | null;

  private constructor(path: string, config: ArchiveConfig, store: ChunkStore) {
    this.path = path;
    this.config = config;
    this.store = store;
    this.mirror =
      store.catalog == null
        ? null
        : new CatalogMirror(path, store.catalog, (id, kind) =>
            kind === 'rev' ? this.revPath(id) : this.mapPath(id),
          );
  }

  private static async create(
    path: string,
    config: ArchiveConfig,
    options: ArchiveOptions,
  ): Promise<Archive> {
    const store = await openStore(config, path, options.stores ?? {}, Archive.configPath(path));
    return new Archive(path, config, store);
  }

  static configPath(dir: string): string {
    return join(resolve(dir), CONFIG_FILE);
  }

  /**
   * Creates an archive with `config`; refuses to overwrite an existing config, and a store that holds
   * another archive's history (unless `attach`). A failed init leaves nothing of its own behind (no
   * config, no `archive-id`), so that it can be run again with other options.
   */
  static async init(
    dir: string,
    rawConfig: Record<string, unknown>,
    options: InitOptions = {},
  ): Promise<Archive> {
    const path = resolve(dir);
    const configPath = Archive.configPath(path);
    const config = validateConfig(archiveConfigSchema, rawConfig, configPath);
    // The store's options are checked before anything is written.
    const store = await openStore(config, path, options.stores ?? {}, configPath);
    if (await exists(configPath)) {
      throw new BackyError('CONFIG_EXISTS', `${configPath} already exists; refusing to overwrite it`);
    }
    const archive = new Archive(path, config, store);
    const owner = await archive.checkNewStore(options.attach ?? false);
    await options.check?.(archive);
    const made = !(await exists(path));
    try {
      await mkdir(path, { recursive: true, mode: PRIVATE_DIR_MODE });
    } catch (error) {
      throw ioError(error, `creating archive ${path}`);
    }
    const hadId = (await readArchiveId(path)) != null;
    try {
      await writeFileAtomic(configPath, stringify(rawConfig));
      if (owner != null && !hadId)
        await writeFileAtomic(join(path, ARCHIVE_ID_FILE), `${owner}\n`, { mode: 0o640 });
      await archive.prepareStore();
      if (owner != null) await archive.pull();
    } catch (error) {
      await rm(configPath, { force: true }).catch(() => {});
      if (!hadId) await rm(join(path, ARCHIVE_ID_FILE), { force: true }).catch(() => {});
      if (made) await rm(path, { recursive: true, force: true }).catch(() => {});
      throw error;
    }
    return archive;
  }

  /**
   * Makes the directory `dir`, which has a config but no `archive-id` (a new host given only the
   * config), the archive whose revisions its remote store holds (`init --attach` of an existing config).
   */
  static async attach(dir: string, options: ArchiveOptions = {}): Promise<Archive> {
    const path = resolve(dir);
    const archive = await Archive.create(path, await Archive.loadConfig(path), options);
    const owner = await archive.checkNewStore(true);
    const hadId = (await readArchiveId(path)) != null;
    try {
      if (!hadId) await writeFileAtomic(join(path, ARCHIVE_ID_FILE), `${owner}\n`, { mode: 0o640 });
      await archive.prepareStore();
      await archive.pull();
    } catch (error) {
      // As a failed init: the directory is left as it was, to try again.
      if (!hadId) await rm(join(path, ARCHIVE_ID_FILE), { force: true }).catch(() => {});
      throw error;
    }
    return archive;
  }

  private static async loadConfig(path: string): Promise<ArchiveConfig> {
    try {
      return await loadArchiveConfig(Archive.configPath(path));
    } catch (error) {
      if (error instanceof BackyError && error.code === 'CONFIG_NOT_FOUND') {
        throw new BackyError(
          'ARCHIVE_NOT_FOUND',
          `${path} is not a backy archive (no ${CONFIG_FILE} file); run \`backy init\` first or pass -b DIR`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * Opens the archive at `dir`. The store must be this archive's (see `checkStore`); with a store that
   * keeps the revisions, the directory's copies are brought up to date first.
   */
  static async open(dir: string, options: ArchiveOptions = {}): Promise<Archive> {
    const path = resolve(dir);
    let config = await Archive.loadConfig(path);
    // A backy 2.x archive whose config names no layout goes on in images (legacy/layout.ts says why).
    if (await impliedImagesLayout(path, Archive.configPath(path))) config = { ...config, layout: 'images' };
    const archive = await Archive.create(path, config, options);
    try {
      await archive.checkStore();
      await archive.pull();
    } catch (error) {
      if (options.onStoreUnreachable == null || archive.mirror == null || !isBackyError(error, 'IO'))
        throw error;
      archive.unreachable = true;
      options.onStoreUnreachable(error);
    }
    return archive;
  }

  /** True when opened with `onStoreUnreachable` and the remote store could not be reached. */
  unreachable = false;

  /**
   * Refuses a store that is not this archive's as configured, in one line naming both sides: an
   * encrypted store while the config has no `store.encryption` (the next backup would write plaintext
   * into it), and a remote store that holds another archive's revisions, or any archive's while this
   * directory has no ID of its own (it is attached explicitly: `init --attach`).
   */
  private async checkStore(): Promise<void> {
    // The marker first: a GET, whose failure carries S3's error code (a wrong key is said as such).
    const owner = (await this.store.catalog?.archiveId()) ?? null;
    await this.checkEncryption();
    if (owner == null) return;
    const local = await readArchiveId(this.path);
    if (local === owner) return;
    const where = Archive.configPath(this.path);
    if (local == null) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${where}: store: ${this.store.root} holds the revisions of archive ${owner}, and ${this.path} has no archive ID: if this directory is that archive (a new host), attach it with \`backy -b ${this.path} init --attach\`; otherwise give it its own store.prefix`,
      );
    }
    throw new BackyError(
      'CONFIG_INVALID',
      `${where}: store: ${this.store.root} belongs to another archive (ID ${owner}, this one is ${local}); give each archive its own store.prefix`,
    );
  }

  private async checkEncryption(): Promise<void> {
    if (this.config.store.encryption != null) return; // the encrypted store checks its key itself
    if (await isEncryptedStore(this.store)) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${Archive.configPath(this.path)}: store.encryption.key-file is not set, but ${this.store.root} is encrypted: put store.encryption back (backy never writes unencrypted data into an encrypted store)`,
      );
    }
  }

  /**
   * For `init`: the ID of the archive whose history the store holds when this directory is to become it
   * (`attach`), else null; refuses a store holding another archive's history without `attach`, and
   * `attach` to a store holding none. Nothing is written.
   */
  private async checkNewStore(attach: boolean): Promise<string | null> {
    const catalog = this.store.catalog;
    const owner = (await catalog?.archiveId()) ?? null;
    await this.checkEncryption();
    const local = await readArchiveId(this.path);
    if (owner == null) {
      if (attach) {
        throw new BackyError(
          'USAGE',
          `init --attach: ${this.store.root} holds no archive to attach to (${catalog == null ? 'a directory store keeps no revisions: --attach is for a remote store' : 'no archive has claimed it'})`,
        );
      }
      return null;
    }
    if (local === owner) return owner;
    if (local != null) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${Archive.configPath(this.path)}: store: ${this.store.root} belongs to another archive (ID ${owner}, this directory is ${local}); give each archive its own store.prefix`,
      );
    }
    if (!attach) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${Archive.configPath(this.path)}: store: ${this.store.root} already holds the history of archive ${owner}: refusing to mix another archive into it; give this archive its own store.prefix, or pass --attach if this directory is to be that archive (e.g. on a new host)`,
      );
    }
    return owner;
  }

  /**
   * Fetches what a remote store's catalog has and the directory lacks (see CatalogMirror). Only after
   * the store was found to be this archive's (`open`, `init`): never mix two archives' revisions.
   */
  async pull(logger?: Logger): Promise<void> {
    const mirror = this.mirror;
    if (mirror == null) return;
    await this.withRevisionsLock(async () => {
      await mirror.pull(logger);
    });
  }

  get logPath(): string {
    return join(this.path, LOG_FILE);
  }

  revPath(id: string): string {
    return join(this.path, `${id}${REV_SUFFIX}`);
  }

  mapPath(id: string): string {
    return join(this.path, `${id}${MAP_SUFFIX}`);
  }

  /** The marker a backup writes first (see PENDING_SUFFIX). */
  private pendingPath(id: string): string {
    return join(this.path, `${id}${PENDING_SUFFIX}`);
  }

  /** The image file of a revision in the `images` layout. */
  imagePath(id: string): string {
    return join(this.path, id);
  }

  /** Creates the store and registers this archive (by its ID, at its current path) as its user. */
  async prepareStore(): Promise<void> {
    await this.store.init();
    await this.store.register(await this.id(), this.path);
  }

  /**
   * Registers this archive with its store if the store exists, so an archive that moved is found at its
   * new path. Best effort: a read-only archive or store is no reason to fail a command that only reads.
   */
  async refreshRegistration(): Promise<void> {
    if (this.unreachable || !(await this.store.exists())) return;
    await this.prepareStore().catch(() => {});
  }

  private cachedId: string | null = null;

  /** The archive's ID (`archive-id`), made on first use; it stays the same when the directory moves. */
  async id(): Promise<string> {
    if (this.cachedId != null) return this.cachedId;
    // Never taken from a remote store: a directory becomes the archive a store holds only by
    // `init --attach`, which writes the store's ID here (see checkNewStore).
    const existing = await readArchiveId(this.path);
    if (existing != null && !isRevisionId(existing)) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${join(this.path, ARCHIVE_ID_FILE)}: not an archive ID (${JSON.stringify(existing.slice(0, 40))})`,
      );
    }
    const id = existing ?? newRevisionId();
    if ((await readArchiveId(this.path)) == null)
      await writeFileAtomic(join(this.path, ARCHIVE_ID_FILE), `${id}\n`, { mode: 0o640 });
    this.cachedId = id;
    return id;
  }

  async scan(): Promise<ArchiveScan> {
    let names: string[];
    try {
      names = await readdir(this.path);
    } catch (error) {
      throw ioError(error, `reading archive ${this.path}`);
    }
    const complete: Revision[] = [];
    const damaged: DamagedRevision[] = [];
    const revIds = new Set<string>();
    for (const name of names) {
      // `last.rev` is backy 2.x's symlink to the newest `.rev`, not a revision of its own.
      if (!name.endsWith(REV_SUFFIX) || name.startsWith('.') || name === `${LAST_LINK}${REV_SUFFIX}`)
        continue;
      const id = name.slice(0, -REV_SUFFIX.length);
      revIds.add(id);
      const file = join(this.path, name);
      let data: RevisionData;
      try {
        data = await readRevisionFile(file);
      } catch (error) {
        // Listed and gone (a dangling symlink is still there): forgotten or expired meanwhile by another
        // command, not damaged. Its ID stays in `revIds`, so its other files (going too) are neither
        // orphans nor an interrupted backup's.
        if (!(await mayExist(file))) continue;
        damaged.push({ id, file, problem: describeProblem(error, file) });
        continue;
      }
      if (data.uuid !== id) damaged.push({ id, file, problem: `its uuid is ${JSON.stringify(data.uuid)}` });
      else if (!isComplete(data))
        damaged.push({ id, file, problem: 'it has no stats (not a complete revision)' });
      else if (data.backend_type === 'legacy-chunked') {
        // A backy 2.2–2.5 revision: `<id>` is its chunk mapping.
        const mapping = await readLegacyMapping(this.imagePath(id)).catch((error: Error) => error);
        if (mapping instanceof Error && !(await mayExist(file)))
          continue; // forgotten meanwhile
        else if (mapping instanceof Error)
          damaged.push({
            id,
            file,
            problem: `a backy 2.x revision whose mapping cannot be read: ${mapping.message}`,
          });
        else complete.push({ ...data, size: mapping.size });
      } else if (data.backend_type === 'cowfile') {
        // A backy 2.0–2.1 revision: its data is the raw image file `<id>`.
        const image = await stat(this.imagePath(id)).catch(() => null);
        if (image == null && !(await mayExist(file)))
          continue; // forgotten meanwhile
        else if (image == null || !image.isFile())
          damaged.push({
            id,
            file,
            problem: `a backy 2.x revision without its image file ${this.imagePath(id)}`,
          });
        else complete.push({ ...data, size: image.size });
      } else complete.push(data);
    }
    const interrupted = names
      .filter((n) => n.endsWith(PENDING_SUFFIX) && !n.startsWith('.'))
      .map((n) => n.slice(0, -PENDING_SUFFIX.length))
      .filter((id) => !revIds.has(id))
      .sort();
    const pending = new Set(interrupted);
    const orphans: string[] = [];
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const id = name.endsWith(MAP_SUFFIX)
        ? name.slice(0, -MAP_SUFFIX.length)
        : isRevisionId(name)
          ? name
          : null;
      if (id == null || revIds.has(id) || pending.has(id)) continue;
      orphans.push(name);
    }
    complete.sort(
      (a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || a.uuid.localeCompare(b.uuid),
    );
    damaged.sort((a, b) => a.id.localeCompare(b.id));
    return { complete, damaged, interrupted, orphans: orphans.sort() };
  }

  /** One line for each thing in the archive that needs an operator's eye (damaged `.rev`, orphans). */
  static describeScan(scan: ArchiveScan): string[] {
    return [
      ...scan.damaged.map(
        (d) =>
          `damaged revision ${d.id}: ${d.file}: ${d.problem} (kept with its data; fix or remove the file by hand)`,
      ),
      ...scan.orphans.map(
        (name) =>
          `unknown file ${name}: no ${REV_SUFFIX} belongs to it (kept, and its chunks stay referenced)`,
      ),
    ];
  }

  /** Complete revisions, oldest first. */
  async revisions(): Promise<Revision[]> {
    return (await this.scan()).complete;
  }

  async resolve(spec: string): Promise<Revision[]> {
    return resolveRevisionSpec(await this.revisions(), this.specOfPath(spec));
  }

  async resolveOne(spec: string): Promise<Revision> {
    return resolveSingleRevision(await this.revisions(), this.specOfPath(spec));
  }

  /** A revision's image path (what `backy find` prints) names that revision, as its ID does. */
  private specOfPath(spec: string): string {
    if (!spec.includes('/')) return spec;
    const id = basename(spec);
    return isRevisionId(id) && resolve(this.path, spec) === this.imagePath(id) ? id : spec;
  }

  /**
   * The exclusive lock a backup holds for its whole run, and forget/expire/tags/distrust for theirs; with
   * a remote store also the store's writer lock, so a second host cannot write the archive at once.
   */
  async lockBackup(): Promise<Lock> {
    const local = await acquireLock(join(this.path, '.backup.lock'), 'exclusive', {
      busyMessage: `a backup of ${this.path} is already running (or another command is changing its revisions)`,
    });
    const catalog = this.store.catalog;
    if (catalog == null) return local;
    let remote: Lock;
    try {
      remote = await catalog.lockWriter();
    } catch (error) {
      await local.release();
      throw error;
    }
    return {
      path: local.path,
      mode: 'exclusive',
      assertHeld: () => remote.assertHeld?.(),
      async release() {
        try {
          await remote.release();
        } finally {
          await local.release();
        }
      },
    };
  }

  /**
   * The short exclusive lock around every change of revision files (`.rev`, `.map`, image files,
   * markers): a backup's commit and clean-up, forget, expire, tags, distrust and verify's trust update.
   * It is waited for, since every holder keeps it only for a few file operations.
   */
  lockRevisions(): Promise<Lock> {
    return acquireLock(join(this.path, '.revisions.lock'), 'exclusive', {
      waitSeconds: REVISIONS_LOCK_WAIT,
      busyMessage: `the revisions of ${this.path} have been locked by another command for ${REVISIONS_LOCK_WAIT} s`,
    });
  }

  private async withRevisionsLock<T>(work: () => Promise<T>): Promise<T> {
    const lock = await this.lockRevisions();
    try {
      return await work();
    } finally {
      await lock.release();
    }
  }

  /**
   * Changes one revision's `.rev` as it is on disk now (so concurrent changes of other fields are not
   * lost). Returns the new revision, or null when the revision no longer exists (it is never recreated).
   */
  async updateRevision(id: string, change: (rev: Revision) => Revision): Promise<Revision | null> {
    return this.withRevisionsLock(() => this.updateStored(id, change, true));
  }

  /** `updateRevision` with the revisions lock held; `refetch`: once, when the store's copy moved on. */
  private async updateStored(
    id: string,
    change: (rev: Revision) => Revision,
    refetch: boolean,
  ): Promise<Revision | null> {
    let current: RevisionData;
    try {
      current = await readRevisionFile(this.revPath(id));
    } catch (error) {
      if (((error as Error).cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return null;
      throw error;
    }
    if (!isComplete(current)) return null;
    const mirror = this.mirror;
    if (mirror != null && !(await mirror.current(id))) {
      // The store's copy changed or went (another host forgot or retagged it) since this directory
      // fetched it: never write a stale copy over it. Fetch again and change what is there now.
      if (!refetch)
        throw new BackyError(
          'LOCKED',
          `revision ${id} is being changed in ${this.store.root} by another host; try again`,
        );
      await mirror.pull();
      return this.updateStored(id, change, false);
    }
    const next = change(current);
    // A backy 2.x revision stays readable by 2.x until `upgrade` converts it (which changes its type).
    const bytes =
      isLegacyRevision(current) && next.backend_type === current.backend_type
        ? Buffer.from(await legacyRevisionText(this.revPath(id), current, next))
        : revisionBytes(next);
    const version = await mirror?.push(id, bytes, false);
    await writeFileAtomic(this.revPath(id), bytes, { mode: 0o640 });
    if (version != null) await mirror!.recorded(id, version);
    return next;
  }

  /** Marks revision `id` as started: from now on its files are provably this backup's own. */
  async markPending(id: string): Promise<void> {
    await writeFileAtomic(this.pendingPath(id), `${process.pid}\n`, { mode: 0o640 });
  }

  /**
   * Commits a new revision: its `.rev` makes it exist; then its marker goes. The commit point is the
   * store's `.rev` for a remote store, the local `.rev` otherwise. Steps after it that fail (the local
   * copy of a remote `.rev`, the marker's removal, the `last` links, the lock's release) do not undo the
   * revision: they are returned, for warnings, and the next run repairs them. Throws only when the
   * revision was not committed, or with `commitUncertain` set when that cannot be told: its files must
   * then stay as they are.
   */
  async commitRevision(rev: RevisionData): Promise<unknown[]> {
    const late: unknown[] = [];
    const afterCommit = (step: () => Promise<unknown>) =>
      step().then(
        () => true,
        (error: unknown) => {
          late.push(error);
          return false;
        },
      );
    let committed = false;
    const revPath = this.revPath(rev.uuid);
    try {
      await this.withRevisionsLock(async () => {
        // A remote store gets the revision first: it exists once the store has its `.rev`.
        const version = await this.mirror?.push(rev.uuid, revisionBytes(rev), rev.backend_type === 'chunked');
        if (version != null) {
          committed = true;
          // Recorded only with the local copy there, or a pull would never fetch it.
          if (await afterCommit(() => writeRevisionFile(revPath, rev)))
            await afterCommit(() => this.mirror!.recorded(rev.uuid, version));
        } else {
          try {
            await writeRevisionFile(revPath, rev);
          } catch (error) {
            // Renamed into place but not made durable (the directory's fsync failed): it exists.
            const info = await lstat(revPath).catch((e: NodeJS.ErrnoException) => e);
            if (info instanceof Error && info.code === 'ENOENT') throw error;
            if (info instanceof Error || !info.isFile()) throw uncertainCommit(rev.uuid, error);
            late.push(error);
          }
          committed = true;
        }
        await afterCommit(() => rm(this.pendingPath(rev.uuid), { force: true }));
        await afterCommit(() => this.updateLastLink());
      });
    } catch (error) {
      if (!committed) throw error;
      late.push(error);
    }
    return late;
  }

  /** Forgets a revision (forget, expire): `.rev` first, so it disappears at once, then its data. */
  async deleteRevision(id: string): Promise<void> {
    await this.withRevisionsLock(() => this.deleteRevisionFiles(id));
  }

  /**
   * Removes what interrupted backups left, and only that: the files of revisions whose `.pending`
   * marker is there without a `.rev`, and backy's own temp files. Anything else it does not understand
   * stays (see `describeScan`). Call with the backup lock held. Returns the removed revision IDs.
   */
  async cleanup(logger?: Logger): Promise<string[]> {
    return this.withRevisionsLock(async () => {
      const { interrupted } = await this.scan();
      for (const id of interrupted) {
        logger?.warn({ revision: id }, 'removing a revision an interrupted backup left');
        await rm(this.mapPath(id), { force: true });
        await rm(this.imagePath(id), { force: true });
        await rm(this.pendingPath(id), { force: true });
      }
      for (const name of await readdir(this.path)) {
        if (isTempName(name)) await rm(join(this.path, name), { force: true });
        // A marker left after its .rev was written (a crash between the two).
        else if (
          name.endsWith(PENDING_SUFFIX) &&
          (await exists(this.revPath(name.slice(0, -PENDING_SUFFIX.length))))
        )
          await rm(join(this.path, name), { force: true });
      }
      if (interrupted.length > 0) await fsyncDir(this.path);
      await this.updateLastLink();
      return interrupted;
    });
  }

  /**
   * Opens a revision for reading. The reader holds the chunk store's shared lock until `close()`, so
   * `purge` cannot delete a chunk it may still read; callers cannot forget to take it.
   */
  async openReader(rev: RevisionData): Promise<RevisionReader> {
    if (rev.backend_type === 'legacy-chunked') {
      // backy 2.x's chunk files: purge never touches them, so no store lock is needed.
      return new LegacyChunkedReader(
        join(this.path, 'chunks'),
        await readLegacyMapping(this.imagePath(rev.uuid)),
      );
    }
    // Only chunks in the store can be purged: image files (images layout, backy 2.x) need no store lock.
    const lock = rev.backend_type === 'chunked' ? await this.store.lock('shared') : null;
    try {
      const map =
        rev.backend_type === 'cowfile'
          ? await legacyImageMap(this.imagePath(rev.uuid))
          : await this.loadMap(rev);
      if (map.size !== rev.size) {
        throw new BackyError(
          'REVISION_INVALID',
          `revision ${rev.uuid}: map size ${map.size} differs from recorded size ${rev.size}`,
        );
      }
      const reader = this.readerFor(rev, map);
      const close = reader.close.bind(reader);
      reader.close = async () => {
        try {
          await close();
        } finally {
          await lock?.release();
        }
      };
      return reader;
    } catch (error) {
      await lock?.release();
      throw error;
    }
  }

  /** A reader over a revision's map in the revision's own layout. */
  readerFor(rev: Pick<RevisionData, 'uuid' | 'backend_type'>, map: ChunkMap): RevisionReader {
    return hasImageFile(rev)
      ? new ImagesRevisionReader(this.imagePath(rev.uuid), map)
      : new ChunkedRevisionReader(this.store, map);
  }

  /**
   * The revision a new backup builds upon, newest first among `candidates` (complete revisions, oldest
   * first): one in the configured layout whose map loads, that passed its own verification, and whose
   * chunks are all in the store. Null means a full backup. Each revision passed over is logged.
   */
  async usableParent(
    candidates: readonly Revision[],
    logger?: Logger,
  ): Promise<{ revision: Revision; map: ChunkMap } | null> {
    for (const rev of [...candidates].reverse()) {
      if (rev.trust === 'distrusted') return null; // the caller rewrites everything after distrust
      if (rev.backend_type !== this.config.layout) return null;
      let map: ChunkMap;
      try {
        map = await this.loadMap(rev);
      } catch (error) {
        logger?.warn(
          { parent: rev.uuid, err: error },
          'the chunk map of a revision is damaged: not building upon it',
        );
        continue;
      }
      // A revision whose chunks are named by an older hash (or not by the store's keyed hash) is not
      // built upon: the next one is full.
      if (map.algorithm !== (this.store.naming?.algorithm ?? CHUNK_HASH)) return null;
      if (map.size !== rev.size) {
        logger?.warn(
          { parent: rev.uuid },
          'the chunk map of a revision does not match its size: not building upon it',
        );
        continue;
      }
      if (this.config.layout === 'chunked') {
        const missing = await this.store.missing(map.uniqueHashes());
        if (missing.length > 0) {
          logger?.warn(
            { parent: rev.uuid, missing: missing.length, first: missing.slice(0, 5) },
            'chunks of the parent revision are missing (or were found damaged): full backup, so they are written anew',
          );
          return null;
        }
      }
      return { revision: rev, map };
    }
    return null;
  }

  /**
   * Opens a writer for revision `id` in the configured layout, starting as a copy of `parent` (from
   * `usableParent`) or empty for a full backup.
   */
  async createWriter(
    id: string,
    parent: { revision: RevisionData; map: ChunkMap } | null,
    options: { rewrite?: boolean; logger?: Logger } = {},
  ): Promise<{ writer: LayoutWriter; parentReader: RevisionReader | null }> {
    const parentMap = parent?.map ?? null;
    const parentReader = parent != null ? this.readerFor(parent.revision, parent.map) : null;
    if (this.config.layout === 'images') {
      const writer = await ImagesRevisionWriter.create(this.imagePath(id), this.mapPath(id), {
        parentMap,
        parentImage: parent != null ? this.imagePath(parent.revision.uuid) : null,
        logger: options.logger,
      });
      return { writer, parentReader };
    }
    const writer = new ChunkedRevisionWriter(this.store, this.mapPath(id), {
      parentMap,
      rewrite: options.rewrite ?? false,
    });
    return { writer, parentReader };
  }

  /**
   * Writes a backy 2.x revision's data in the configured layout (for `upgrade`): into the chunk store
   * with a new `.map`, or, for a 2.0–2.1 image kept as the `images` layout's image, just a `.map`.
   * Nothing is committed: the caller compares `newReader` with the 2.x data, then rewrites the `.rev`.
   */
  async convertLegacy(
    rev: RevisionData,
    legacy: RevisionReader,
    onBytes: (bytes: number) => void,
  ): Promise<{ map: ChunkMap; newReader: RevisionReader }> {
    if (this.config.layout === 'images') {
      if (rev.backend_type !== 'cowfile') {
        throw new BackyError(
          'USAGE',
          `upgrade: revision ${rev.uuid} is in backy 2.2–2.5's chunked format, which converts into layout "chunked" only; set layout: chunked in ${Archive.configPath(this.path)}`,
        );
      }
      // The 2.x reader hashed the image when it was opened: its hashes are the map, no second pass.
      if (legacy.hashAlgorithm !== CHUNK_HASH) throw new Error(`unexpected hash ${legacy.hashAlgorithm}`);
      const map = new ChunkMap(legacy.size, legacy.chunkSize);
      for (let i = 0; i < map.chunkCount; i++) map.set(i, legacy.chunkHash(i));
      await map.save(this.mapPath(rev.uuid));
      onBytes(map.size);
      return { map, newReader: new ImagesRevisionReader(this.imagePath(rev.uuid), map) };
    }
    const writer = new ChunkedRevisionWriter(this.store, this.mapPath(rev.uuid));
    try {
      await writer.resize(legacy.size);
      for (let i = 0; i < legacy.chunkCount; i++) {
        if (legacy.isZero(i)) writer.zero(i);
        else await writer.write(i, await legacy.read(i));
        onBytes(legacy.chunkLength(i));
      }
      const map = await writer.seal();
      return { map, newReader: new ChunkedRevisionReader(this.store, map) };
    } catch (error) {
      await writer.abort().catch(() => {});
      throw error;
    }
  }

  /** After a failed backup whose writer has removed its data: its marker goes too. */
  async dropPending(id: string): Promise<void> {
    await this.withRevisionsLock(async () => {
      // Only when the `.rev` is certainly absent: a revision that may exist keeps its map.
      if (await mayExist(this.revPath(id))) return;
      await rm(this.mapPath(id), { force: true });
      await rm(this.pendingPath(id), { force: true });
    });
  }

  /**
   * Points `last` at the newest revision's image file and `last.rev` at its `.rev` (as backy 2.x did),
   * when the newest revision has an image file (`images` layout, backy 2.x revisions); removes both
   * links otherwise, so `dd if=last` never reads an older image than the newest revision. Only
   * symlinks are touched: a regular file of that name is left alone.
   */
  async updateLastLink(): Promise<void> {
    const newest = (await this.revisions()).at(-1);
    const target = newest != null && hasImageFile(newest) ? newest.uuid : null;
    let changed = false;
    for (const [name, to] of [
      [LAST_LINK, target],
      [`${LAST_LINK}${REV_SUFFIX}`, target == null ? null : `${target}${REV_SUFFIX}`],
    ] as const) {
      const link = join(this.path, name);
      const info = await lstat(link).catch(() => null);
      if (info != null && !info.isSymbolicLink()) continue;
      const current = info == null ? null : await readlink(link).catch(() => null);
      if (current === to) continue;
      if (to == null) {
        await rm(link, { force: true });
      } else {
        const tmp = tempPathFor(link);
        await symlink(to, tmp);
        await rename(tmp, link);
      }
      changed = true;
    }
    if (changed) await fsyncDir(this.path);
  }

  /** Warnings about the configured layout on this file system (e.g. `images` without reflinks). */
  async layoutWarnings(): Promise<string[]> {
    if (this.config.layout !== 'images') return [];
    if (await supportsReflink(this.path)) return [];
    return [
      `the file system of ${this.path} cannot reflink (copy-on-write clones): with layout "images" every revision is a full (sparse) copy of the image; use btrfs or XFS with reflink=1 to store only changed blocks`,
    ];
  }

  /**
   * A revision's map, checked to be the one the revision was written with (the checksum its `.rev`
   * records): another revision's map copied over it would hand out another image, in every reader.
   */
  async loadMap(rev: Pick<RevisionData, 'uuid' | 'map_checksum'>): Promise<ChunkMap> {
    const path = this.mapPath(rev.uuid);
    const map = await ChunkMap.load(path);
    if (rev.map_checksum != null && map.checksum !== rev.map_checksum) {
      throw new BackyError(
        'REVISION_INVALID',
        `revision ${rev.uuid}: its map ${path} is not the one it was written with (the .rev records checksum ${rev.map_checksum.slice(0, 16)}…, the map has ${map.checksum?.slice(0, 16)}…): another revision's map copied over it, or altered`,
      );
    }
    return map;
  }

  /** Deletes a revision: the `.rev` first (so it disappears at once), then its map and image file. */
  private async deleteRevisionFiles(id: string): Promise<void> {
    await this.mirror?.remove(id);
    await rm(this.revPath(id), { force: true });
    await rm(this.mapPath(id), { force: true });
    await rm(this.imagePath(id), { force: true });
    await fsyncDir(this.path);
    await this.mirror?.forget(id);
    await this.updateLastLink();
  }
}

/** The error of a commit whose outcome cannot be told; `isCommitUncertain` recognises it. */
function uncertainCommit(id: string, cause: unknown): BackyError {
  const error = new BackyError(
    'IO',
    `revision ${id} may or may not have been committed (${(cause as Error).message ?? cause}); its files are kept as they are, the next backup sorts them out`,
    { cause },
  );
  Object.defineProperty(error, 'commitUncertain', { value: true });
  return error;
}

/** True for `commitRevision`'s error when it cannot tell whether the revision exists. */
export function isCommitUncertain(error: unknown): boolean {
  return (error as { commitUncertain?: boolean } | null)?.commitUncertain === true;
}

/** A revision's `.rev` as written to the archive directory and to a remote store. */
function revisionBytes(rev: RevisionData): Buffer {
  return Buffer.from(stringify(rev, { sortMapEntries: false }));
}

function describeProblem(error: unknown, file: string): string {
  const message = (error as Error).message ?? String(error);
  return message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message;
}

/** Revisions whose data is the image file `<id>` in the archive. */
function hasImageFile(rev: Pick<RevisionData, 'backend_type'>): boolean {
  return rev.backend_type === 'images' || rev.backend_type === 'cowfile';
}

/**
 * A chunk map for a backy 2.0–2.1 raw image, made by hashing the file: those revisions stored no
 * checksums, so what is there now is what they hold. Reads then go through the images layout's reader.
 */
async function legacyImageMap(path: string): Promise<ChunkMap> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw ioError(error, `opening backy 2.x image ${path}`);
  }
  try {
    const size = (await handle.stat()).size;
    const map = new ChunkMap(size);
    for (let index = 0; index < map.chunkCount; index++) {
      const length = map.chunkLength(index);
      const buffer = chunkBuffers.acquire(length);
      try {
        const { bytesRead } = await handle.read(buffer, 0, length, index * map.chunkSize);
        if (bytesRead !== length) throw new BackyError('IO', `${path}: short read at chunk ${index}`);
        map.set(index, isAllZero(buffer) ? null : await hashChunk(buffer, map.algorithm));
      } finally {
        chunkBuffers.release(buffer);
      }
    }
    return map;
  } finally {
    await handle.close();
  }
}

/** The `archive-id` of the archive at `dir` as written (trimmed), or null when it has none. */
export async function readArchiveId(dir: string): Promise<string | null> {
  const file = join(dir, ARCHIVE_ID_FILE);
  return readFile(file, 'utf8').then(
    (t) => t.trim(),
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw ioError(error, `reading ${file}`);
    },
  );
}
