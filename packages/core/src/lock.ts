import { spawn } from 'node:child_process';
import { type FileHandle, open } from 'node:fs/promises';
import { BackyError, ioError } from './errors.js';

export type LockMode = 'shared' | 'exclusive';

/** A held flock(2) lock. The kernel drops it when the process dies, so `kill -9` never leaves it held. */
export interface Lock {
  readonly path: string;
  readonly mode: LockMode;
  release(): Promise<void>;
  /**
   * Throws LOCKED if the lock may no longer be held: a lease on a remote store that could not be
   * renewed in time. Called before what must not happen without it (a backup's commit, purge's deletes).
   * A flock(2) lock cannot be lost and has none.
   */
  assertHeld?(): void;
  /**
   * Renews a lease now (unless a renewal a moment ago proves it fresh) and throws LOCKED when that
   * fails or came too late: right before a commit or a deletion, so that a holder that stalled (a GC
   * pause, a suspended VM) does not act on a lease others may have taken meanwhile.
   */
  refresh?(): Promise<void>;
}

/** Proves each of `locks` still held (`refresh`, else `assertHeld`): right before what must not happen without them. */
export async function proveHeld(locks: Iterable<Lock>): Promise<void> {
  for (const lock of locks) {
    if (lock.refresh != null) await lock.refresh();
    else lock.assertHeld?.();
  }
}

export interface LockOptions {
  /** Seconds to wait for the lock; 0 (default) fails at once. */
  waitSeconds?: number;
  /** Said in the error when the lock is busy, e.g. "a backup of /srv/backy/web01 is running". */
  busyMessage?: string;
}

/**
 * Takes a flock(2) lock on `path`. Node has no flock binding, so util-linux's flock(1) locks the open
 * file description this process shares with it; the lock then lives exactly as long as our descriptor.
 */
export async function acquireLock(path: string, mode: LockMode, options: LockOptions = {}): Promise<Lock> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'a', 0o640);
  } catch (error) {
    throw ioError(error, `opening lock file ${path}`);
  }
  const args = [mode === 'shared' ? '-s' : '-x'];
  const wait = options.waitSeconds ?? 0;
  args.push(...(wait > 0 ? ['-w', String(wait)] : ['-n']), '3');
  let status: number | null;
  try {
    status = await new Promise<number | null>((resolve, reject) => {
      const child = spawn('flock', args, { stdio: ['ignore', 'ignore', 'pipe', handle.fd] });
      let stderr = '';
      child.stderr?.on('data', (d) => {
        stderr += d;
      });
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 || code === 1
          ? resolve(code)
          : reject(new Error(stderr.trim() || `flock exited with ${code}`)),
      );
    });
  } catch (error) {
    await handle.close();
    throw ioError(error, `locking ${path}`);
  }
  if (status !== 0) {
    await handle.close();
    throw new BackyError('LOCKED', options.busyMessage ?? `${path} is locked by another process`);
  }
  let released = false;
  return {
    path,
    mode,
    async release() {
      if (released) return;
      released = true;
      await handle.close();
    },
  };
}
