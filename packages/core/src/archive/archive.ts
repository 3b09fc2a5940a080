import { basename, resolve } from 'node:path';
import type { Logger } from 'pino';
import { type ArchiveConfig, archiveConfigSchema, loadArchiveConfig, validateConfig } from '../config.js';
import { BackyError, isBackyError } from '../errors.js';
import { CONFIG_FILE } from '../format/archive-files.js';
import { exists } from '../fs-util.js';
import { isRevisionId } from '../ids.js';
import type { Lock } from '../lock.js';
import type { Revision, RevisionData } from '../revision.js';
import type { RevisionReader } from '../revision-io.js';
import { resolveRevisionSpec, resolveSingleRevision } from '../revision-spec.js';
import type { ChunkMap } from '../store/chunk-map.js';
import type { ChunkStore, StoreDrivers } from '../store/contract.js';
import { CatalogMirror } from './catalog-mirror.js';
import { checkNewStore, checkStore, ensureArchiveId, readArchiveId, writeArchiveFiles } from './identity.js';
import { impliedImagesLayout } from './implied-layout.js';
import type { ConfigLayout } from './layout.js';
import { layoutFor, layoutOf } from './layouts.js';
import { lockBackup, withRevisionsLock } from './locks.js';
import { loadMap } from './maps.js';
import { openStore } from './open-store.js';
import { configPath, imagePath, logPath } from './paths.js';
import { usableParent } from './readers.js';
import { deleteRevisionFiles, updateStored } from './revisions.js';
import { type ArchiveScan, cleanupArchive, describeScan, scanArchive } from './scan.js';
import { RevisionTransaction, type TransactionParts } from './transaction.js';

export interface ArchiveOptions {
  /** Store drivers besides the local directory, by type (the CLI wires in `s3`). */
  stores?: StoreDrivers;
  /**
   * Called, instead of failing, when a remote store cannot be reached (an IO error) while the archive
   * is opened: the archive then has the directory's copies of its revisions only, possibly out of date
   * (for `status`). Unset: opening fails.
   */
  onStoreUnreachable?: (error: BackyError) => void;
  /**
   * For a command that deletes (expire, forget, purge): the store is opened with its admin credentials
   * where it has separate ones (an append-only host, docs/immutable-backups.md).
   */
  admin?: boolean;
  /**
   * For `open`: a directory without an archive ID whose remote store holds an archive's history becomes
   * that archive (as `init --attach`) instead of refusing. Fleet mode's backups pass it: there every
   * server's directory of a job is the job's one archive on the shared store (docs/fleet.md).
   */
  attachIfNew?: boolean;
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

/**
 * One job's directory: its config, revisions, chunk maps, log and (by default) its chunk store. The
 * only code that lists, reads and commits revisions; each responsibility is a module of this folder.
 */
export class Archive {
  readonly path: string;
  readonly config: ArchiveConfig;
  readonly store: ChunkStore;
  /** What the folder's modules share; with a remote store, the directory's copies of its revisions. */
  private readonly parts: TransactionParts;

  private constructor(path: string, config: ArchiveConfig, store: ChunkStore) {
    this.path = path;
    this.config = config;
    this.store = store;
    const mirror = store.catalog == null ? null : new CatalogMirror(path, store.catalog);
    this.parts = { path, config, store, mirror };
  }

  private static async create(
    path: string,
    config: ArchiveConfig,
    options: ArchiveOptions,
  ): Promise<Archive> {
    const store = await Archive.storeOf(path, config, options);
    return new Archive(path, config, store);
  }

  /** The store `config` names, opened for the archive at `path` (whose layout it must suit). */
  private static storeOf(path: string, config: ArchiveConfig, options: ArchiveOptions): Promise<ChunkStore> {
    return openStore(config, path, options.stores ?? {}, configPath(path), layoutFor(config.layout), {
      admin: options.admin === true,
    });
  }

  static configPath(dir: string): string {
    return configPath(dir);
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
    const config = validateConfig(archiveConfigSchema, rawConfig, configPath(path));
    // The store's options are checked before anything is written.
    const store = await Archive.storeOf(path, config, options);
    if (await exists(configPath(path))) {
      throw new BackyError('CONFIG_EXISTS', `${configPath(path)} already exists; refusing to overwrite it`);
    }
    const archive = new Archive(path, config, store);
    const owner = await checkNewStore(archive, options.attach ?? false);
    await options.check?.(archive);
    await writeArchiveFiles(path, rawConfig, owner, async () => {
      await archive.prepareStore();
      if (owner != null) await archive.pullCatalog();
    });
    return archive;
  }

  /**
   * Makes the directory `dir`, which has a config but no `archive-id` (a new host given only the
   * config), the archive whose revisions its remote store holds (`init --attach` of an existing config).
   */
  static async attach(dir: string, options: ArchiveOptions = {}): Promise<Archive> {
    const path = resolve(dir);
    const archive = await Archive.create(path, await Archive.loadConfig(path), options);
    const owner = await checkNewStore(archive, true);
    // As a failed init: the directory is left as it was, to try again.
    await writeArchiveFiles(path, null, owner, async () => {
      await archive.prepareStore();
      await archive.pullCatalog();
    });
    return archive;
  }

  private static async loadConfig(path: string): Promise<ArchiveConfig> {
    try {
      return await loadArchiveConfig(configPath(path));
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
    // A backy 2.x archive whose config names no layout goes on in images (implied-layout.ts says why).
    if (await impliedImagesLayout(path, configPath(path))) config = { ...config, layout: 'images' };
    const archive = await Archive.create(path, config, options);
    if (options.attachIfNew === true && (await archive.unattached())) return Archive.attach(path, options);
    try {
      await checkStore(archive);
      await archive.pullCatalog();
    } catch (error) {
      if (options.onStoreUnreachable == null || archive.parts.mirror == null || !isBackyError(error, 'IO'))
        throw error;
      archive.unreachable = true;
      options.onStoreUnreachable(error);
    }
    return archive;
  }

  /** True when the directory has no archive ID and its remote store holds an archive's history. */
  private async unattached(): Promise<boolean> {
    if (this.parts.mirror == null || (await readArchiveId(this.path)) != null) return false;
    return (await this.store.catalog?.archiveId()) != null;
  }

  /** True when opened with `onStoreUnreachable` and the remote store could not be reached. */
  unreachable = false;

  /**
   * Fetches what a remote store's catalog has and the directory lacks (see CatalogMirror); a no-op
   * without one. Only after the store was found to be this archive's (`open`, `init`): never mix two
   * archives' revisions. A backup does it again under its writer lease (`--if-newest`).
   */
  async pullCatalog(logger?: Logger): Promise<void> {
    const mirror = this.parts.mirror;
    if (mirror == null) return;
    await withRevisionsLock(this.path, () => mirror.pull(logger));
  }

  get logPath(): string {
    return logPath(this.path);
  }

  /** The image file of a revision in the `images` layout. */
  imagePath(id: string): string {
    return imagePath(this.path, id);
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
    this.cachedId ??= await ensureArchiveId(this.path);
    return this.cachedId;
  }

  scan(): Promise<ArchiveScan> {
    return scanArchive(this.path);
  }

  /** One line for each thing in the archive that needs an operator's eye (damaged `.rev`, orphans). */
  static describeScan(scan: ArchiveScan): string[] {
    return describeScan(scan);
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

  /** See locks.ts: one writer of revisions for a whole run (across hosts with a remote store). */
  lockBackup(fence?: number): Promise<Lock> {
    return lockBackup(this.path, this.store, fence);
  }

  /**
   * Changes one revision's `.rev` as it is on disk now (so concurrent changes of other fields are not
   * lost). Returns the new revision, or null when the revision no longer exists (it is never recreated).
   */
  updateRevision(id: string, change: (rev: Revision) => Revision): Promise<Revision | null> {
    return withRevisionsLock(this.path, () => updateStored(this.parts, id, change));
  }

  /** Forgets a revision (forget, expire): `.rev` first, so it disappears at once, then its data. */
  deleteRevision(id: string): Promise<void> {
    return withRevisionsLock(this.path, () => deleteRevisionFiles(this.parts, id));
  }

  /** Removes what interrupted backups left, and only that (see scan.ts). Returns their revision IDs. */
  cleanup(logger?: Logger): Promise<string[]> {
    return cleanupArchive(this.path, logger);
  }

  /** Starts a new revision `id` (backup, copy): see transaction.ts. Call with `lockBackup` held. */
  begin(id: string): Promise<RevisionTransaction> {
    return RevisionTransaction.begin(this.parts, id);
  }

  /**
   * Opens a revision for reading. The reader holds the chunk store's shared lock until `close()`, so
   * `purge` cannot delete a chunk it may still read.
   */
  openReader(rev: RevisionData): Promise<RevisionReader> {
    return layoutOf(rev).openReader(this.parts, rev);
  }

  /** The revision a new backup builds upon (see readers.ts), or null for a full backup. */
  usableParent(
    candidates: readonly Revision[],
    logger?: Logger,
  ): Promise<{ revision: Revision; map: ChunkMap } | null> {
    return usableParent(this, candidates, logger);
  }

  /** A revision's map, checked to be the one the revision was written with. */
  loadMap(rev: Pick<RevisionData, 'uuid' | 'map_checksum'>): Promise<ChunkMap> {
    return loadMap(this.path, rev);
  }

  /** The layout new revisions are written in (the config's `layout`). */
  get layout(): ConfigLayout {
    return layoutFor(this.config.layout);
  }

  /** Warnings about the configured layout on this file system (e.g. `images` without reflinks). */
  layoutWarnings(): Promise<string[]> {
    return this.layout.warnings(this.path);
  }
}
