import { mkdir, readdir, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { stringify } from 'yaml';
import { type ArchiveConfig, archiveConfigSchema, loadArchiveConfig, validateConfig } from './config.js';
import { BackyError, ioError } from './errors.js';
import { fsyncDir, isTempName, tempPathFor, writeFileAtomic } from './fs-util.js';
import { isRevisionId } from './ids.js';
import { ChunkedRevisionReader, ChunkedRevisionWriter } from './layout/chunked.js';
import { ImagesRevisionReader, ImagesRevisionWriter, supportsReflink } from './layout/images.js';
import { acquireLock, type Lock } from './lock.js';
import {
  isComplete,
  type Revision,
  type RevisionData,
  readRevisionFile,
  writeRevisionFile,
} from './revision.js';
import type { RevisionReader, RevisionWriter } from './revision-io.js';
import { resolveRevisionSpec, resolveSingleRevision } from './revision-spec.js';
import { CHUNK_HASH, ChunkMap } from './store/chunk-map.js';
import { ChunkStore } from './store/chunk-store.js';

export const CONFIG_FILE = 'config';
export const LOG_FILE = 'backy.log';
const REV_SUFFIX = '.rev';
const MAP_SUFFIX = '.map';

/** The symlink to the newest revision's image file in the `images` layout. */
export const LAST_LINK = 'last';

/** A writer for a new revision, whatever the layout: seal makes it durable, abort leaves nothing. */
export interface LayoutWriter extends RevisionWriter {
  /** Hashes of the chunks this backup wrote anew (what a source's quick verification reads back). */
  readonly freshChunks: ReadonlySet<string>;
  seal(): Promise<ChunkMap>;
  abort(): Promise<void>;
}

export interface ArchiveScan {
  /** Complete revisions, oldest first. */
  complete: Revision[];
  /** IDs of revisions that were started but never completed. */
  incomplete: string[];
}

/** One job's directory: its config, revisions, chunk maps, log and (by default) its chunk store. */
export class Archive {
  readonly path: string;
  readonly config: ArchiveConfig;
  readonly store: ChunkStore;

  private constructor(path: string, config: ArchiveConfig) {
    this.path = path;
    this.config = config;
    const storePath = config.store.path == null ? join(path, 'chunks') : resolve(path, config.store.path);
    this.store = new ChunkStore(storePath, { codec: config.store.codec });
  }

  static configPath(dir: string): string {
    return join(resolve(dir), CONFIG_FILE);
  }

  /** Creates an archive with `config`; refuses to overwrite an existing config. */
  static async init(dir: string, rawConfig: Record<string, unknown>): Promise<Archive> {
    const path = resolve(dir);
    const configPath = Archive.configPath(path);
    const config = validateConfig(archiveConfigSchema, rawConfig, configPath);
    if (
      await stat(configPath).then(
        () => true,
        () => false,
      )
    ) {
      throw new BackyError('CONFIG_EXISTS', `${configPath} already exists; refusing to overwrite it`);
    }
    try {
      await mkdir(path, { recursive: true });
    } catch (error) {
      throw ioError(error, `creating archive ${path}`);
    }
    await writeFileAtomic(configPath, stringify(rawConfig));
    const archive = new Archive(path, config);
    await archive.prepareStore();
    return archive;
  }

  static async open(dir: string): Promise<Archive> {
    const path = resolve(dir);
    const configPath = Archive.configPath(path);
    let config: ArchiveConfig;
    try {
      config = await loadArchiveConfig(configPath);
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
    return new Archive(path, config);
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

  /** The image file of a revision in the `images` layout. */
  imagePath(id: string): string {
    return join(this.path, id);
  }

  /** Creates the store and registers this archive as its user. */
  async prepareStore(): Promise<void> {
    await this.store.init();
    await this.store.register(this.path);
  }

  async scan(): Promise<ArchiveScan> {
    let names: string[];
    try {
      names = await readdir(this.path);
    } catch (error) {
      throw ioError(error, `reading archive ${this.path}`);
    }
    const complete: Revision[] = [];
    const incomplete = new Set<string>();
    const revIds = new Set<string>();
    for (const name of names) {
      if (name.endsWith(REV_SUFFIX) && !name.startsWith('.')) {
        const id = name.slice(0, -REV_SUFFIX.length);
        revIds.add(id);
        let data: RevisionData;
        try {
          data = await readRevisionFile(join(this.path, name));
        } catch {
          incomplete.add(id);
          continue;
        }
        if (isComplete(data) && data.uuid === id) complete.push(data);
        else incomplete.add(id);
      }
    }
    for (const name of names) {
      if (name.endsWith(MAP_SUFFIX) && !name.startsWith('.')) {
        const id = name.slice(0, -MAP_SUFFIX.length);
        if (!revIds.has(id)) incomplete.add(id);
      }
    }
    complete.sort(
      (a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || a.uuid.localeCompare(b.uuid),
    );
    return { complete, incomplete: [...incomplete].sort() };
  }

  /** Complete revisions, oldest first. */
  async revisions(): Promise<Revision[]> {
    return (await this.scan()).complete;
  }

  async resolve(spec: string): Promise<Revision[]> {
    return resolveRevisionSpec(await this.revisions(), spec);
  }

  async resolveOne(spec: string): Promise<Revision> {
    return resolveSingleRevision(await this.revisions(), spec);
  }

  /** The exclusive lock a backup (and any change of revisions) holds. */
  lockBackup(): Promise<Lock> {
    return acquireLock(join(this.path, '.backup.lock'), 'exclusive', {
      busyMessage: `a backup of ${this.path} is already running (or another command is changing its revisions)`,
    });
  }

  /**
   * Removes what interrupted runs left: revisions without completed stats, maps without a revision and
   * temporary files. Call with the backup lock held. Returns the removed revision IDs.
   */
  async cleanup(logger?: Logger): Promise<string[]> {
    const { incomplete } = await this.scan();
    for (const id of incomplete) {
      logger?.warn({ revision: id }, 'removing incomplete revision left by an interrupted run');
      await this.deleteRevisionFiles(id);
    }
    const complete = new Set((await this.scan()).complete.map((r) => r.uuid));
    for (const name of await readdir(this.path)) {
      if (isTempName(name)) await rm(join(this.path, name), { force: true });
      // An image file whose revision never completed (or was deleted half-way).
      else if (isRevisionId(name) && !complete.has(name)) {
        logger?.warn({ revision: name }, 'removing image file of an incomplete revision');
        await rm(join(this.path, name), { force: true });
      }
    }
    await this.updateLastLink();
    return incomplete;
  }

  async openReader(rev: RevisionData): Promise<RevisionReader> {
    const map = await ChunkMap.load(this.mapPath(rev.uuid));
    if (map.size !== rev.size) {
      throw new BackyError(
        'REVISION_INVALID',
        `revision ${rev.uuid}: map size ${map.size} differs from recorded size ${rev.size}`,
      );
    }
    return this.readerFor(rev, map);
  }

  /** A reader over a revision's map in the revision's own layout. */
  readerFor(rev: Pick<RevisionData, 'uuid' | 'backend_type'>, map: ChunkMap): RevisionReader {
    return rev.backend_type === 'images'
      ? new ImagesRevisionReader(this.imagePath(rev.uuid), map)
      : new ChunkedRevisionReader(this.store, map);
  }

  /**
   * Opens a writer for revision `id` in the configured layout. `parent` (the newest usable revision) is
   * only built upon when it has the same layout; otherwise the backup is a full one.
   */
  async createWriter(
    id: string,
    parent: RevisionData | null,
    options: { rewrite?: boolean; logger?: Logger } = {},
  ): Promise<{ writer: LayoutWriter; parentReader: RevisionReader | null }> {
    const sameLayout = parent != null && parent.backend_type === this.config.layout;
    const loaded = sameLayout ? await this.loadMap(parent.uuid) : null;
    // A revision whose chunks are named by an older hash is not built upon: the next one is full.
    const parentMap = loaded?.algorithm === CHUNK_HASH ? loaded : null;
    const parentReader = parentMap != null ? this.readerFor(parent!, parentMap) : null;
    if (this.config.layout === 'images') {
      const writer = await ImagesRevisionWriter.create(this.imagePath(id), this.mapPath(id), {
        parentMap,
        parentImage: parentMap != null ? this.imagePath(parent!.uuid) : null,
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
   * Points `last` at the newest revision's image file (`images` layout), repairing a missing or wrong
   * link; removes it when there is no image revision. A no-op for the chunked layout.
   */
  async updateLastLink(): Promise<void> {
    const link = join(this.path, LAST_LINK);
    const newest = (await this.revisions()).filter((r) => r.backend_type === 'images').at(-1);
    const current = await readlink(link).catch(() => null);
    if (newest == null) {
      if (current != null) await rm(link, { force: true });
      return;
    }
    if (current === newest.uuid) return;
    const tmp = tempPathFor(link);
    await symlink(newest.uuid, tmp);
    await rename(tmp, link);
    await fsyncDir(this.path);
  }

  /** Warnings about the configured layout on this file system (e.g. `images` without reflinks). */
  async layoutWarnings(): Promise<string[]> {
    if (this.config.layout !== 'images') return [];
    if (await supportsReflink(this.path)) return [];
    return [
      `the file system of ${this.path} cannot reflink (copy-on-write clones): with layout "images" every revision is a full (sparse) copy of the image; use btrfs or XFS with reflink=1 to store only changed blocks`,
    ];
  }

  async loadMap(id: string): Promise<ChunkMap> {
    return ChunkMap.load(this.mapPath(id));
  }

  async writeRevision(rev: RevisionData): Promise<void> {
    await writeRevisionFile(this.revPath(rev.uuid), rev);
  }

  /** Deletes a revision: the `.rev` first (so it disappears at once), then its map and image file. */
  async deleteRevisionFiles(id: string): Promise<void> {
    await rm(this.revPath(id), { force: true });
    await rm(this.mapPath(id), { force: true });
    await rm(this.imagePath(id), { force: true });
    await fsyncDir(this.path);
    await this.updateLastLink();
  }
}
