// The `last` and `last.rev` symlinks backy 2.x kept (format/archive-files.ts, LAST_LINK).
import { lstat, readlink, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { imageFileName, LAST_LINK, LAST_REV_LINK, revFileName } from '../format/archive-files.js';
import { fsyncDir, tempPathFor } from '../fs-util.js';
import type { RevisionData } from '../revision.js';
import { layoutOf } from './layouts.js';

/** An object (not a bare function) so that a test can make the links fail after a commit. */
export const lastLinks = {
  /**
   * Points `last` at the newest revision's image file and `last.rev` at its `.rev` (as backy 2.x did),
   * when the newest revision has an image file (`images` layout, backy 2.x revisions); removes both
   * links otherwise, so `dd if=last` never reads an older image than the newest revision. Only
   * symlinks are touched: a regular file of that name is left alone.
   */
  async update(dir: string, newest: Pick<RevisionData, 'uuid' | 'backend_type'> | null): Promise<void> {
    const target = newest != null && layoutOf(newest).imageFile ? newest.uuid : null;
    let changed = false;
    for (const [name, to] of [
      [LAST_LINK, target == null ? null : imageFileName(target)],
      [LAST_REV_LINK, target == null ? null : revFileName(target)],
    ] as const) {
      const link = join(dir, name);
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
    if (changed) await fsyncDir(dir);
  },
};
