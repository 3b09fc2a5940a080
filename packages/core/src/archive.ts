import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { stringify } from 'yaml';
import { type ArchiveConfig, archiveConfigSchema, loadArchiveConfig, validateConfig } from './config.js';
import { BackyError, ioError } from './errors.js';
import { fsyncDir, isTempName, writeFileAtomic } from './fs-util.js';
import { ChunkedRevisionReader } from './layout/chunked.js';
import { acquireLock, type Lock } from './lock.js';
import {
  isComplete,
  type Revision,
  type RevisionData,
  readRevisionFile,
  writeRevisionFile,
} from './revision.js';
import type { RevisionReader } from './revision-io.js';
import { resolveRevisionSpec, resolveSingleRevision } from './revision-spec.js';
import { ChunkMap } from './store/chunk-map.js';
import { ChunkStore } from './store/chunk-store.js';

export const CONFIG_FILE = 'config';
export const LOG_FILE = 'backy.log';
const REV_SUFFIX = '.rev';
const MAP_SUFFIX = '.map';

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
    for (const name of await readdir(this.path)) {
      if (isTempName(name)) await rm(join(this.path, name), { force: true });
    }
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
    return new ChunkedRevisionReader(this.store, map);
  }

  async loadMap(id: string): Promise<ChunkMap> {
    return ChunkMap.load(this.mapPath(id));
  }

  async writeRevision(rev: RevisionData): Promise<void> {
    await writeRevisionFile(this.revPath(rev.uuid), rev);
  }

  /** Deletes a revision: the `.rev` first (so it disappears at once), then its map. */
  async deleteRevisionFiles(id: string): Promise<void> {
    await rm(this.revPath(id), { force: true });
    await rm(this.mapPath(id), { force: true });
    await fsyncDir(this.path);
  }
}
