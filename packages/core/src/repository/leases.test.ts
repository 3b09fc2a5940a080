import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend } from '../backend/contract.js';
import { type BackyErrorCode, isBackyError } from '../errors.js';
import { tempDir } from '../testing/helpers.js';
import { RemoteDirectoryBackend } from '../testing-fixtures/remote-directory.js';
import { lockStore, lockWriter, setLeaseTimings } from './leases.js';

// Leases of milliseconds: a lapse is watched for LEASE ms instead of two minutes.
const LEASE = 1000;

let dir: { path: string; cleanup(): Promise<void> };
let backend: RemoteDirectoryBackend;

beforeEach(async () => {
  setLeaseTimings({ leaseMs: LEASE, renewMs: 100, pollMs: 20, freshMs: 10 });
  dir = await tempDir('backy-leases-');
  backend = new RemoteDirectoryBackend(dir.path);
  await backend.init();
});

afterEach(async () => {
  setLeaseTimings();
  await dir.cleanup();
});

/**
 * A lease of a process on another machine whose clock is `skewMs` off ours: it writes its body now and
 * then every 50 ms (a live holder renewing) until stopped (the holder died).
 */
function foreignHolder(name: string, mode: string, skewMs: number) {
  const token = randomBytes(8).toString('hex');
  const write = () => {
    const now = Date.now() + skewMs;
    const body = {
      host: 'elsewhere',
      hostId: 'other-boot/1',
      pid: 4242,
      mode,
      since: now,
      expires: now + LEASE,
      token,
    };
    return backend.save(name, Buffer.from(JSON.stringify(body)));
  };
  let timer: NodeJS.Timeout | null = null;
  let writing: Promise<unknown> = Promise.resolve();
  return {
    async start() {
      await write();
      timer = setInterval(() => {
        writing = writing.then(write);
      }, 50);
    },
    /** Dead: no renewal lands after this. */
    async stop() {
      if (timer != null) clearInterval(timer);
      await writing;
    },
  };
}

const HOUR = 3_600_000;

async function expectBackyError(promise: Promise<unknown>, code: BackyErrorCode): Promise<Error> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isBackyError(error, code), `${code} expected, got ${String(error)}`).toBe(true);
  return error as Error;
}

describe('leases between hosts whose clocks differ', () => {
  it('a writer lease whose holder clock is behind (expired by ours) binds while it is renewed, and is taken over once it stops', async () => {
    const holder = foreignHolder('locks/writer', 'writer', -HOUR);
    await holder.start();
    try {
      const error = await expectBackyError(lockWriter(backend), 'LOCKED');
      expect(error.message).toMatch(/is being written by host elsewhere \(pid 4242\)/);
    } finally {
      await holder.stop();
    }
    const started = performance.now();
    const lock = await lockWriter(backend);
    // Taken only after its version stood still for a whole lease on this host's clock.
    expect(performance.now() - started).toBeGreaterThanOrEqual(LEASE);
    expect(JSON.parse((await backend.load('locks/writer'))!.toString()).pid).toBe(process.pid);
    await lock.release();
  });

  it('a writer lease whose dead holder clock was ahead (expires in a year) is taken over after one lease', async () => {
    const holder = foreignHolder('locks/writer', 'writer', 365 * 24 * HOUR);
    await holder.start();
    await holder.stop();
    const lock = await lockWriter(backend);
    expect(JSON.parse((await backend.load('locks/writer'))!.toString()).pid).toBe(process.pid);
    await lock.release();
  });

  it('purge is kept out by a renewed shared lease that looks expired, and removes it once it stops', async () => {
    const backup = foreignHolder('locks/shared/0123456789abcdef', 'shared', -HOUR);
    await backup.start();
    try {
      const error = await expectBackyError(lockStore(backend, 'exclusive'), 'LOCKED');
      expect(error.message).toMatch(/in use by a backup, restore or verify \(host elsewhere/);
      expect(await backend.stat('locks/purge')).toBeNull();
    } finally {
      await backup.stop();
    }
    const purge = await lockStore(backend, 'exclusive');
    // Its holder, should it wake up, finds its lease gone and does not commit.
    expect(await backend.stat('locks/shared/0123456789abcdef')).toBeNull();
    await purge.release();
  });

  it('a backup is kept out by a renewed purge lease that looks expired, and removes it once it stops', async () => {
    const purge = foreignHolder('locks/purge', 'exclusive', -HOUR);
    await purge.start();
    try {
      const error = await expectBackyError(lockStore(backend, 'shared'), 'LOCKED');
      expect(error.message).toMatch(/is being purged by host elsewhere/);
    } finally {
      await purge.stop();
    }
    const shared = await lockStore(backend, 'shared');
    expect(await backend.stat('locks/purge')).toBeNull();
    await shared.release();
  });

  it('a holder counts its lease on its own monotonic clock: a jump of the wall clock does not lose it', async () => {
    const lock = await lockWriter(backend);
    const realNow = Date.now;
    Date.now = () => realNow() + HOUR;
    try {
      await new Promise((r) => setTimeout(r, 3 * 100)); // renewals under the jumped clock
      lock.assertHeld!();
      await lock.refresh!();
    } finally {
      Date.now = realNow;
    }
    await lock.release();
  });
});

const fencedBody = (fence: number) =>
  JSON.stringify({
    host: 'elsewhere',
    hostId: 'other-boot/1',
    pid: 4242,
    mode: 'writer',
    since: Date.now(),
    expires: Date.now() + LEASE,
    token: 'feedfeedfeedfeed',
    fence,
  });

describe('fleet writers (a fence token in the lease)', () => {
  it('a live writer fenced with token 1 on another machine is taken over at once by token 2; token 1, or none, waits', async () => {
    // A holder on another machine renewing as a real one does: on the version it wrote last.
    let version = (await backend.saveOnce('locks/writer', Buffer.from(fencedBody(1))))!.version;
    let renewals = 0;
    let lost = false;
    const timer = setInterval(async () => {
      const saved = lost
        ? null
        : await backend.save('locks/writer', Buffer.from(fencedBody(1)), { ifVersion: version });
      if (saved == null) lost = true;
      else {
        version = saved.version;
        renewals++;
      }
    }, 50);
    const holder = { stop: async () => clearInterval(timer) };
    try {
      await new Promise((r) => setTimeout(r, 120));
      await expectBackyError(lockWriter(backend), 'LOCKED');
      await expectBackyError(lockWriter(backend, 1), 'LOCKED');
      const started = performance.now();
      const lock = await lockWriter(backend, 2);
      // No lease length watched: the holder cannot commit under token 1 once the fence is 2.
      expect(performance.now() - started).toBeLessThan(LEASE / 2);
      const body = JSON.parse((await backend.load('locks/writer'))!.toString());
      expect(body).toMatchObject({ pid: process.pid, fence: 2 });
      expect(renewals).toBeGreaterThan(0);
      // The old holder's renewals (on the version it wrote) fail from now on; ours hold.
      await new Promise((r) => setTimeout(r, 150));
      expect(lost).toBe(true);
      expect(JSON.parse((await backend.load('locks/writer'))!.toString()).pid).toBe(process.pid);
      await lock.refresh!();
      // And a writer with a token no higher than ours waits for us.
      await expectBackyError(lockWriter(backend, 2), 'LOCKED');
      await lock.release();
    } finally {
      await holder.stop();
    }
  });
});

describe('releasing and refreshing a lease', () => {
  it('release removes only its own version: a lease another host took over stays', async () => {
    const lock = await lockWriter(backend);
    const theirs = Buffer.from(JSON.stringify({ host: 'elsewhere', pid: 7, expires: Date.now() + LEASE }));
    // Taken over while we were presumed dead (on the version seen, as a taker does).
    while (
      (await backend.save('locks/writer', theirs, {
        ifVersion: (await backend.stat('locks/writer'))!.version,
      })) == null
    );
    await lock.release();
    expect((await backend.load('locks/writer'))?.equals(theirs)).toBe(true);
  });

  it('refresh proves the lease before a commit: one taken meanwhile fails it, though its time has not run out', async () => {
    const lock = await lockStore(backend, 'shared');
    const [item] = await names('locks/shared/');
    // A purge that judged it stale removed it (this holder stalled without its clock moving on).
    await backend.remove(item!);
    await new Promise((r) => setTimeout(r, 20));
    lock.assertHeld!(); // the clock alone cannot tell
    await expectBackyError(lock.refresh!(), 'LOCKED');
    await lock.release();
  });

  it('a lease that could not be renewed for a lease length is lost, and a late renewal does not revive it', async () => {
    let stalled = false;
    const stalling: Backend = Object.create(backend, {
      save: {
        value: async (name: string, data: Uint8Array, options?: { ifVersion?: string }) => {
          if (stalled) await new Promise((r) => setTimeout(r, LEASE + 50));
          return backend.save(name, data, options);
        },
      },
    });
    const lock = await lockWriter(stalling);
    await new Promise((r) => setTimeout(r, 20));
    stalled = true;
    await expectBackyError(lock.refresh!(), 'LOCKED');
    stalled = false;
    await new Promise((r) => setTimeout(r, 3 * 100));
    expect(() => lock.assertHeld!()).toThrow(/lost the lease/);
    await lock.release();
  });
});

describe('backends whose conditional writes cannot lock', () => {
  it('refuses to lock a store whose backend has no atomic conditional writes, naming it', async () => {
    const unsafe: Backend = Object.create(backend, {
      capabilities: { value: { ...backend.capabilities, conditionalWrites: false } },
    });
    for (const attempt of [lockWriter(unsafe), lockStore(unsafe, 'shared'), lockStore(unsafe, 'exclusive')]) {
      const error = await expectBackyError(attempt, 'STORE_INVALID');
      expect(error.message).toBe(
        `${backend.location} cannot be locked: its backend has no atomic conditional writes (capabilities.conditionalWrites is false), which the locks of a store without a local directory need`,
      );
    }
    expect(await names('locks/')).toEqual([]);
  });

  it('a one-host backend refuses a lease held from another machine', async () => {
    const oneHost: Backend = Object.create(backend, {
      capabilities: { value: { ...backend.capabilities, conditionalWrites: 'one-host' } },
    });
    const holder = foreignHolder('locks/writer', 'writer', 0);
    await holder.start();
    await holder.stop();
    const error = await expectBackyError(lockWriter(oneHost), 'STORE_INVALID');
    expect(error.message).toMatch(/locked by host elsewhere .*atomic on one host only/);
    const lock = await lockStore(oneHost, 'shared'); // leases of this host work
    await lock.release();
  });
});

async function names(prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const item of backend.list(prefix)) out.push(item.name);
  return out;
}
