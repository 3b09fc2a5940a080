import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { BackyError, ioError } from '../errors.js';
import { fsyncDir, writeFileAtomic } from '../fs-util.js';
import { isRevisionId } from '../ids.js';
import type { RevisionCatalog, RevisionFileKind } from '../store/contract.js';
import { isSealed } from '../store/encryption.js';
import { saveMapBytes } from './maps.js';
import { mapPath, revPath } from './paths.js';

/**
 * Which revision files of the archive directory are copies of a remote store's catalog, and at which
 * version: `<archive>/.catalog` (JSON `{"revisions": {"<id>": "<version>"}}`). Only a revision listed
 * here is ever removed from the directory because the store no longer has it (forgotten on another
 * host): a `.rev` the mirror did not put there is not provably a copy, and stays.
 */
const INDEX_FILE = '.catalog';

/**
 * Keeps an archive directory's `.rev` and `.map` files in step with a remote store's catalog, where the
 * revisions really live: the store is written first (map, then `.rev`), the directory after, so a
 * crash in between leaves a revision the next `pull` fetches. A new host with nothing but the archive's
 * `config` pulls every revision.
 */
export class CatalogMirror {
  private readonly indexPath: string;

  constructor(
    private readonly dir: string,
    readonly catalog: RevisionCatalog,
  ) {
    this.indexPath = join(dir, INDEX_FILE);
  }

  /** The directory's copy of revision `id`'s file `kind`. */
  private fileOf(id: string, kind: RevisionFileKind): string {
    return kind === 'rev' ? revPath(this.dir, id) : mapPath(this.dir, id);
  }

  /**
   * Fetches revisions the directory lacks or has in an older version, and removes the directory's
   * copies of revisions the store no longer has. Call with the archive's revisions lock held.
   */
  async pull(logger?: Logger): Promise<{ fetched: string[]; dropped: string[] }> {
    const remote = await this.catalog.list();
    const index = await this.readIndex();
    const fetched: string[] = [];
    const dropped: string[] = [];
    for (const [id, version] of remote) {
      if (!isRevisionId(id)) continue;
      if (index[id] === version && (await this.hasLocal(id))) continue;
      const map = await this.catalog.read(id, 'map');
      const rev = await this.catalog.read(id, 'rev');
      if (rev == null) continue; // forgotten between list and read
      if (isSealed(rev) || (map != null && isSealed(map))) {
        throw new BackyError(
          'REVISION_INVALID',
          `revision ${id} in the store is encrypted: set store.encryption.key-file in the archive config`,
        );
      }
      if (map != null) await saveMapBytes(this.dir, id, map);
      await writeFileAtomic(this.fileOf(id, 'rev'), rev, { mode: 0o640, syncDir: false });
      index[id] = version;
      fetched.push(id);
    }
    for (const id of Object.keys(index)) {
      if (remote.has(id)) continue;
      await rm(this.fileOf(id, 'rev'), { force: true });
      await rm(this.fileOf(id, 'map'), { force: true });
      delete index[id];
      dropped.push(id);
    }
    if (fetched.length > 0 || dropped.length > 0) {
      await fsyncDir(this.dir);
      await this.writeIndex(index);
      if (fetched.length > 0) logger?.info({ revisions: fetched }, 'revisions fetched from the store');
      if (dropped.length > 0)
        logger?.info({ revisions: dropped }, 'revisions the store no longer has: local copies removed');
    }
    return { fetched, dropped };
  }

  /**
   * Puts a new revision into the store: its map, then its `.rev`. Resolves with the `.rev`'s version,
   * which the caller records (`recorded`) once it has written the local `.rev`: a crash in between leaves
   * the old version in the index, and the next pull fetches the new `.rev` again.
   */
  async push(id: string, rev: Buffer, withMap: boolean, retainUntil?: number): Promise<string> {
    const options = retainUntil == null ? {} : { retainUntil };
    if (withMap) {
      const map = await readFile(this.fileOf(id, 'map')).catch((error) => {
        throw ioError(error, `reading ${this.fileOf(id, 'map')}`);
      });
      await this.catalog.write(id, 'map', map, options);
    }
    return this.catalog.write(id, 'rev', rev, options);
  }

  /**
   * Whether the store still holds revision `id` at the version this directory last saw: an update made
   * from a stale copy (another host forgot the revision, or changed it, meanwhile) must not be written
   * over it. False: pull first, then decide again on the fresh copy.
   */
  async current(id: string): Promise<boolean> {
    const index = await this.readIndex();
    const version = (await this.catalog.list()).get(id);
    return version != null && index[id] === version;
  }

  /** Records that the local `.rev` of `id` is the store's at `version` (after writing it). */
  async recorded(id: string, version: string): Promise<void> {
    const index = await this.readIndex();
    index[id] = version;
    await this.writeIndex(index);
  }

  /** Removes a revision from the store (its `.rev` first); the caller removes the local files, then `forget`s it. */
  async remove(id: string): Promise<void> {
    await this.catalog.delete(id);
  }

  /**
   * Drops `id` from the index, after its local files are gone: a crash before leaves the entry, and the
   * next pull removes the local copies the store no longer has.
   */
  async forget(id: string): Promise<void> {
    const index = await this.readIndex();
    if (id in index) {
      delete index[id];
      await this.writeIndex(index);
    }
  }

  private async hasLocal(id: string): Promise<boolean> {
    return readFile(this.fileOf(id, 'rev')).then(
      () => true,
      () => false,
    );
  }

  private async readIndex(): Promise<Record<string, string>> {
    let text: string;
    try {
      text = await readFile(this.indexPath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw ioError(error, `reading ${this.indexPath}`);
    }
    try {
      const parsed = JSON.parse(text) as { revisions?: Record<string, string> };
      return { ...(parsed.revisions ?? {}) };
    } catch (error) {
      throw new BackyError(
        'REVISION_INVALID',
        `${this.indexPath}: not valid JSON (remove it: the next command fetches the revisions anew)`,
        { cause: error },
      );
    }
  }

  private async writeIndex(index: Record<string, string>): Promise<void> {
    await writeFileAtomic(this.indexPath, `${JSON.stringify({ revisions: index }, null, 1)}\n`, {
      mode: 0o640,
    });
  }
}
