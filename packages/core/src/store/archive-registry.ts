import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { BackyError, ioError } from '../errors.js';
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

  /**
   * The registered archives: entry name, archive ID (null for old entries), path. An entry that cannot
   * be read or does not name its archive (empty, not one absolute path, or a path other than the one its
   * name was made from) is an error naming it: purge must not take "unknown" for "no archive", since
   * that archive's chunks would then count for nothing. A missing registry directory is an empty list.
   */
  async entries(): Promise<RegistryEntry[]> {
    const dir = this.dir;
    const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[];
      throw ioError(error, `reading the archive registry ${dir}`);
    });
    const out: RegistryEntry[] = [];
    for (const name of names) {
      if (isTempName(name)) continue;
      const file = join(dir, name);
      const text = await readFile(file, 'utf8').catch((error) => {
        throw ioError(error, `reading registry entry ${file}`);
      });
      const path = text.trim();
      const dot = name.indexOf('.');
      const key = dot > 0 ? name.slice(dot + 1) : name;
      const problem =
        path === ''
          ? 'is empty'
          : path.includes('\n') || !isAbsolute(path)
            ? 'does not hold one absolute archive path'
            : key !== pathKey(path)
              ? `names ${path}, which is not the path it was registered with`
              : null;
      if (problem != null)
        throw new BackyError(
          'REVISION_INVALID',
          `registry entry ${file} ${problem}: the store cannot tell which archive uses it; run \`backy -b ARCHIVE status\` in each archive using the store to register it again, then remove this entry`,
        );
      out.push({ entry: name, id: dot > 0 ? name.slice(0, dot) : null, path });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path) || a.entry.localeCompare(b.entry));
  }
}

function pathKey(abs: string): string {
  return createHash('sha256').update(abs).digest('hex').slice(0, 32);
}
