import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBackyError } from './errors.js';
import { acquireLock } from './lock.js';
import { tempDir } from './testing/helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

describe('locks', () => {
  it('exclude each other, share shared locks, and free on release', async () => {
    const path = join(dir.path, 'lock');
    const a = await acquireLock(path, 'exclusive');
    const busy = await acquireLock(path, 'exclusive', { busyMessage: 'busy!' }).catch((e) => e);
    expect(isBackyError(busy, 'LOCKED')).toBe(true);
    expect(busy.message).toBe('busy!');
    expect(isBackyError(await acquireLock(path, 'shared').catch((e) => e), 'LOCKED')).toBe(true);
    await a.release();
    const s1 = await acquireLock(path, 'shared');
    const s2 = await acquireLock(path, 'shared');
    expect(isBackyError(await acquireLock(path, 'exclusive').catch((e) => e), 'LOCKED')).toBe(true);
    await s1.release();
    await s2.release();
    await (await acquireLock(path, 'exclusive')).release();
  });

  it('is released by the kernel when the holder is killed with SIGKILL', async () => {
    const path = join(dir.path, 'lock');
    // A separate process holds the lock the same way backy does: flock(1) on an inherited descriptor.
    const holder = spawn('bash', ['-c', `exec 3>>"${path}"; flock -x 3; echo locked; exec sleep 60`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    expect(isBackyError(await acquireLock(path, 'exclusive').catch((e) => e), 'LOCKED')).toBe(true);
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));
    await (await acquireLock(path, 'exclusive')).release();
  });

  it('waits for a lock when asked', async () => {
    const path = join(dir.path, 'lock');
    const a = await acquireLock(path, 'exclusive');
    setTimeout(() => void a.release(), 300);
    const b = await acquireLock(path, 'exclusive', { waitSeconds: 5 });
    await b.release();
  });
});
