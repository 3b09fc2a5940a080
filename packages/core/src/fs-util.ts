import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ioError } from './errors.js';

/** Suffix of temporary files; anything ending in it is garbage from an interrupted write. */
export const TEMP_SUFFIX = '.tmp';

export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}${TEMP_SUFFIX}`);
}

export function isTempName(name: string): boolean {
  return name.startsWith('.') && name.endsWith(TEMP_SUFFIX);
}

/** fsync a directory so that renames and new entries inside it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface AtomicWriteOptions {
  /** fsync the parent directory after the rename (default true). */
  syncDir?: boolean;
  /** File mode (default 0o640: nothing in an archive is for "other", see private-modes.ts). */
  mode?: number;
}

/** Writes `data` to `path` so that readers see either the old or the complete new content: temp, fsync, rename. */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const tmp = tempPathFor(path);
  try {
    const handle = await open(tmp, 'wx', options.mode ?? 0o640);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
    if (options.syncDir ?? true) await fsyncDir(dirname(path));
  } catch (error) {
    await rm(tmp, { force: true }).catch(() => {});
    throw ioError(error, `writing ${path}`);
  }
}

/**
 * False only when `path` is certainly absent (ENOENT); any other error of `lstat` counts as there. For
 * decisions that delete data when a file is absent.
 */
export async function mayExist(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    (error: NodeJS.ErrnoException) => error.code !== 'ENOENT',
  );
}

/** Whether `path` exists (any kind of file). */
export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
