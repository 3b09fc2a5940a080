// The archive's two locks: the backup lock (one writer of revisions for a whole run, across hosts with
// a remote store) and the short revisions lock around each change of revision files.
import { join } from 'node:path';
import { acquireLock, type Lock, proveHeld } from '../lock.js';
import type { ChunkStore } from '../store/contract.js';

/** Seconds a short change of revision files waits for another one to finish. */
const REVISIONS_LOCK_WAIT = 120;

/**
 * The exclusive lock a backup holds for its whole run, and forget/expire/tags/distrust for theirs; with
 * a remote store also the store's writer lock, so a second host cannot write the archive at once.
 */
export async function lockBackup(dir: string, store: ChunkStore, fence?: number): Promise<Lock> {
  const local = await acquireLock(join(dir, '.backup.lock'), 'exclusive', {
    busyMessage: `a backup of ${dir} is already running (or another command is changing its revisions)`,
  });
  const catalog = store.catalog;
  if (catalog == null) return local;
  let remote: Lock;
  try {
    remote = await catalog.lockWriter(fence == null ? {} : { fence });
  } catch (error) {
    await local.release();
    throw error;
  }
  return {
    path: local.path,
    mode: 'exclusive',
    assertHeld: () => remote.assertHeld?.(),
    refresh: () => proveHeld([remote]),
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
export function lockRevisions(dir: string): Promise<Lock> {
  return acquireLock(join(dir, '.revisions.lock'), 'exclusive', {
    waitSeconds: REVISIONS_LOCK_WAIT,
    busyMessage: `the revisions of ${dir} have been locked by another command for ${REVISIONS_LOCK_WAIT} s`,
  });
}

/** Runs `work` with the revisions lock of `dir` held. */
export async function withRevisionsLock<T>(dir: string, work: () => Promise<T>): Promise<T> {
  const lock = await lockRevisions(dir);
  try {
    return await work();
  } finally {
    await lock.release();
  }
}
