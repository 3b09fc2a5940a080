import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { ioError } from '../errors.js';
import { fsyncDir, isTempName, writeFileAtomic } from '../fs-util.js';

export interface RegistryEntry {
  /** The entry's file name in `.archives/`. */
  entry: string;
  /** The archive's ID; null for entries written before archives had IDs. */
  id: string | null;
  path: string;
}

/**
 * The archives using a chunk store, for purge: a directory (the store's `.archives/`) with one file per
 * archive and path, `<id>.<hash of path>`, that holds the archive's path.
 */
export class ArchiveRegistry {
  constructor(readonly dir: string) {}

  /**
   * Records that archive `id` at `archiveDir` uses the store. An archive that moved gets a second
   * entry; purge drops the old one once it sees the same ID live at the new path. Entries of the older
   * form (a hash of the path alone) are replaced.
   */
  async register(id: string, archiveDir: string): Promise<void> {
    const abs = resolve(archiveDir);
    const entry = join(this.dir, `${id}.${pathKey(abs)}`);
    const existing = await readFile(entry, 'utf8').catch(() => null);
    if (existing?.trim() !== abs) await writeFileAtomic(entry, `${abs}\n`, { mode: 0o640 });
    const legacy = join(this.dir, pathKey(abs));
    if ((await readFile(legacy, 'utf8').catch(() => null))?.trim() === abs) await rm(legacy, { force: true });
  }

  /** Removes an entry (by its file name, from `entries`). */
  async unregister(entry: string): Promise<void> {
    await rm(join(this.dir, basename(entry)), { force: true });
    await fsyncDir(this.dir).catch(() => {});
  }

  /** The registered archives: entry name, archive ID (null for old entries), path. */
  async entries(): Promise<RegistryEntry[]> {
    const dir = this.dir;
    const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[];
      throw ioError(error, `reading the archive registry ${dir}`);
    });
    const out: RegistryEntry[] = [];
    for (const name of names) {
      if (isTempName(name)) continue;
      const text = await readFile(join(dir, name), 'utf8').catch((error) => {
        throw ioError(error, `reading registry entry ${join(dir, name)}`);
      });
      const path = text.trim();
      if (path === '') continue;
      const dot = name.indexOf('.');
      out.push({ entry: name, id: dot > 0 ? name.slice(0, dot) : null, path });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path) || a.entry.localeCompare(b.entry));
  }
}

function pathKey(abs: string): string {
  return createHash('sha256').update(abs).digest('hex').slice(0, 32);
}
