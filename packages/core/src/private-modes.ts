import { chmod, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';

/**
 * Archives and stores hold whole VM disks: nothing in them is readable by "other" (issue 12 found
 * chunk files, images and maps 0444 in 0755 directories: any local user could read every VM's disk).
 * The group keeps read access, for a backup operators' group.
 */
export const PRIVATE_DIR_MODE = 0o750;
/** Files that change (`.rev`, config, registry entries, locks, the log). */
export const PRIVATE_FILE_MODE = 0o640;
/** Files that never change once written (chunk files, maps, images of the `images` layout). */
export const SEALED_FILE_MODE = 0o440;

/**
 * Takes read access for "other" away from an archive and its store, for archives written before
 * backy made them private: the archive directory and every file in it, the store's directories, and
 * the chunk files in any fan-out directory that was still open to others (a fixed one is skipped, so
 * this costs a few hundred `stat` calls once done). Best effort: what cannot be changed (owned by
 * another user of a shared store) is logged and left.
 */
export async function restrictModes(
  archiveDir: string,
  storeRoot: string | null,
  logger?: Logger,
): Promise<void> {
  let failures = 0;
  const restrict = async (path: string, keep: number): Promise<boolean> => {
    const info = await lstat(path).catch(() => null);
    if (info == null || info.isSymbolicLink() || (info.mode & 0o007) === 0) return false;
    await chmod(path, info.mode & keep & 0o7777).catch(() => {
      failures++;
    });
    return true;
  };
  const entries = async (dir: string) => readdir(dir).catch(() => [] as string[]);
  // Anything else "other" may have: directories keep their group bits, files lose any "other" bit.
  const notOther = 0o7770;
  await restrict(archiveDir, notOther);
  for (const name of await entries(archiveDir)) await restrict(join(archiveDir, name), notOther);
  // A store that is not a local directory (object storage) has no modes to fix.
  if (storeRoot != null) {
    await restrict(storeRoot, notOther);
    await restrict(join(storeRoot, '.archives'), notOther);
    for (const name of await entries(join(storeRoot, '.archives')))
      await restrict(join(storeRoot, '.archives', name), notOther);
    for (const fan of await entries(storeRoot)) {
      const dir = join(storeRoot, fan);
      if (!/^[0-9a-f]{2}$/.test(fan)) {
        await restrict(dir, notOther); // `.purge.lock`
        continue;
      }
      if (!(await restrict(dir, notOther))) continue;
      for (const name of await entries(dir)) await restrict(join(dir, name), notOther);
    }
  }
  if (failures > 0)
    logger?.warn(
      { archive: archiveDir, store: storeRoot, failures },
      'could not take read access for others away from some files of the archive or its store',
    );
}
