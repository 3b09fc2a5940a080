import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Backend, BackendObject } from '../backend/contract.js';
import { removeVersion } from '../backend/remove-version.js';
import { BackyError } from '../errors.js';
import type { Lock, LockMode } from '../lock.js';

/**
 * Locks on a store that many hosts reach, without a lock server: lease objects under `locks/`, on any
 * backend without a local directory (one with one takes flock(2) locks there, see locks.ts).
 *
 * - The writer lock is one object, `locks/writer`, created with `saveOnce` (S3 `If-None-Match: *`) (so of two hosts
 *   exactly one creates it) and renewed with `save` on its version (S3 `If-Match` on its ETag).
 * - Purge against backups, restores and verifications (exclusive against shared): each shared holder
 *   writes its own `locks/shared/<token>`, then looks for `locks/purge`; purge creates `locks/purge`
 *   (conditionally, as the writer lock), then lists `locks/shared/`. Each side writes before it reads,
 *   and S3 is strongly consistent, so of a purge and a backup starting together at least one sees the
 *   other and backs off: purge never runs while a backup may still reference a chunk it would delete.
 *
 * Every lease is renewed every RENEW_MS on its version. Hosts' clocks are not trusted to agree: a lease
 * binds until this process has watched its version stay unchanged for LEASE_MS on its own monotonic
 * clock (or its holder is a process of this host that is gone); the `expires` its holder wrote only
 * tells when it is plainly live (no need to watch). A stale lease is then taken over, or removed,
 * conditionally on the version watched, so of two takers one wins and a holder that wakes up finds it
 * gone. The holder counts a lease from when it sent the last renewal that came back in time, on its
 * own monotonic clock: past LEASE_MS - RENEW_MS it presumes the lease lost (`assertHeld` throws), and
 * `refresh` renews it (proving nobody took it) right before a backup commits and as purge deletes.
 *
 * A fleet backup's writer lease records its fence token (`backup --fence`). A writer with a higher token
 * takes such a lease over at once, conditionally on its version: the holder cannot commit anymore (the
 * taker raises the store's fence, which the holder's commit checks after renewing, and the renewal
 * fails on the changed version), so a dead or stalled server's lease does not hold its job up for a
 * whole lease (docs/fleet.md).
 */
const DEFAULTS = { leaseMs: 120_000, renewMs: 20_000, pollMs: 1000, freshMs: 2000 };

/** The lease's times; shorter ones only for tests (see `setLeaseTimings`). */
export interface LeaseTimings {
  /** How long a lease binds after its last renewal (120 s). */
  leaseMs: number;
  /** How often a holder renews (20 s); a watcher polls a lease's version four times as often. */
  renewMs: number;
  /** How often a busy lock is tried again while waiting for it (1 s). */
  pollMs: number;
  /** A renewal younger than this proves the lease fresh for `refresh` without another (2 s). */
  freshMs: number;
}

let timings: LeaseTimings = { ...DEFAULTS };

/** For tests alone: shorter lease times so that lapses take milliseconds; no argument restores them. */
export function setLeaseTimings(changes: Partial<LeaseTimings> = {}): void {
  timings = { ...DEFAULTS, ...changes };
}

/** This host's monotonic clock (not moved by NTP or an operator's `date`), in milliseconds. */
const monotonic = (): number => performance.now();

interface LeaseBody {
  host: string;
  /** This machine's boot and PID namespace (see HOST_ID); host names are not unique (cloned VMs). */
  hostId?: string;
  pid: number;
  mode: LockMode | 'writer';
  since: number;
  /** The holder's wall clock plus LEASE_MS at its last renewal: a hint, other hosts' clocks differ. */
  expires: number;
  token: string;
  /**
   * Released by its holder without a delete (an append-only store): binds nobody, and is taken over
   * (or overwritten) on its version like a stale one.
   */
  released?: boolean;
  /**
   * The writer's fleet token (`backup --fence`): a writer with a higher one takes the lease over at
   * once, since this holder can no longer commit (the store's fence, raised by the taker, refuses it).
   */
  fence?: number;
}

function describe(body: LeaseBody | null): string {
  if (body == null) return 'another host';
  return `host ${body.host} (pid ${body.pid}) since ${new Date(body.since).toISOString()}`;
}

/**
 * Who "this host" is for the rule that a gone process's lease binds no more: the kernel's boot ID and
 * this PID namespace (two containers, or two clones of a VM with one host name, differ in them). Null
 * when they cannot be read: then the rule is off and only watched leases are taken over.
 */
const HOST_ID: string | null = (() => {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return `${boot}/${statSync('/proc/self/ns/pid').ino}`;
  } catch {
    return null;
  }
})();

function parseLease(bytes: Buffer | null): LeaseBody | null {
  if (bytes == null) return null;
  try {
    const body = JSON.parse(bytes.toString('utf8')) as LeaseBody;
    return typeof body.expires === 'number' ? body : null;
  } catch {
    return null;
  }
}

/**
 * What a lease's body alone tells: `stale` when its holder is a process of this host that is gone
 * (a backup killed with -9 does not lock the store for a lease's length), `live` when its holder's
 * clock says it was renewed within a lease's length, `watch` otherwise: a lapsed-looking or
 * implausibly long lease may be a live holder's whose clock is behind or ahead, or a dead one's.
 */
function firstLook(backend: Backend, body: LeaseBody | null): 'stale' | 'live' | 'watch' {
  if (body == null) return 'watch';
  if (body.released === true) return 'stale';
  if (body.hostId != null && HOST_ID != null) {
    if (body.hostId === HOST_ID && body.pid !== process.pid && !processAlive(body.pid)) return 'stale';
    if (backend.capabilities.conditionalWrites === 'one-host' && bootOf(body.hostId) !== bootOf(HOST_ID))
      throw new BackyError(
        'STORE_INVALID',
        `${where(backend, '')} is locked by ${describe(body)}, another machine, but its backend's conditional writes are atomic on one host only: use the store from one host`,
      );
  }
  const left = body.expires - Date.now();
  return left > 0 && left <= timings.leaseMs + timings.renewMs ? 'live' : 'watch';
}

const bootOf = (hostId: string): string => hostId.split('/')[0]!;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Watches objects at the versions seen until each has stayed so for a whole lease on this host's
 * monotonic clock (its holder stopped renewing), or one changes (its holder is alive: returned at
 * once). An object that disappears is dropped (released). `seenAt`: when the versions were seen.
 */
async function watch(
  backend: Backend,
  seen: Map<string, string>,
  seenAt: number,
): Promise<{ changed: string | null; stale: string[] }> {
  const left = new Map(seen);
  for (;;) {
    const done = monotonic() - seenAt >= timings.leaseMs;
    for (const [name, version] of left) {
      const now = await backend.stat(name);
      if (now == null) left.delete(name);
      else if (now.version !== version) return { changed: name, stale: [] };
    }
    if (done || left.size === 0) return { changed: null, stale: [...left.keys()] };
    await sleep(Math.min(timings.renewMs / 4, Math.max(1, seenAt + timings.leaseMs - monotonic())));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What binds at `name`: nothing, a live holder's lease, or a stale lease at `version`. */
type Judged =
  | { state: 'absent' }
  | { state: 'live'; holder: LeaseBody | null }
  | { state: 'stale'; version: string };

async function judge(backend: Backend, name: string): Promise<Judged> {
  const current = await backend.stat(name);
  if (current == null) return { state: 'absent' };
  const seenAt = monotonic();
  const holder = parseLease(await backend.load(name));
  const look = firstLook(backend, holder);
  if (look === 'live') return { state: 'live', holder };
  if (look === 'stale') return { state: 'stale', version: current.version };
  const watched = await watch(backend, new Map([[name, current.version]]), seenAt);
  if (watched.changed != null)
    return { state: 'live', holder: parseLease(await backend.load(name)) ?? holder };
  return watched.stale.length === 0 ? { state: 'absent' } : { state: 'stale', version: current.version };
}

/** A held lease: renewed in the background until released. */
class Lease implements Lock {
  private lost = false;
  private timer: NodeJS.Timeout;
  private released = false;
  private renewing: Promise<boolean> | null = null;

  constructor(
    private readonly backend: Backend,
    private readonly name: string,
    readonly mode: LockMode,
    private body: LeaseBody,
    private etag: string,
    /** Monotonic time at which the write that made `etag` was sent. */
    private renewedAt: number,
  ) {
    this.timer = setInterval(() => void this.renew(), timings.renewMs);
    this.timer.unref();
  }

  get path(): string {
    return where(this.backend, this.name);
  }

  /** Renews now (or joins the renewal under way): true when it succeeded in time. */
  private renew(): Promise<boolean> {
    this.renewing ??= this.write().finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  private async write(): Promise<boolean> {
    if (this.released || this.lost) return false;
    const sent = monotonic();
    // Once lapsed, others may have acted on it (a purge): a late renewal must not make it valid again.
    if (sent - this.renewedAt >= timings.leaseMs) {
      this.lost = true;
      return false;
    }
    const body = { ...this.body, expires: Date.now() + timings.leaseMs };
    let saved: BackendObject | null;
    try {
      saved = await this.backend.save(this.name, Buffer.from(JSON.stringify(body)), { ifVersion: this.etag });
    } catch {
      return false; // retried at the next tick; assertHeld tells when it has been too long
    }
    if (saved == null) {
      this.lost = true; // taken over or removed: we were presumed dead
      return false;
    }
    this.etag = saved.version;
    this.body = body;
    // Answered after the lease lapsed: a watcher may have acted before this renewal landed.
    if (monotonic() - this.renewedAt >= timings.leaseMs) {
      this.lost = true;
      return false;
    }
    this.renewedAt = sent;
    return true;
  }

  assertHeld(): void {
    if (this.lost || monotonic() - this.renewedAt > timings.leaseMs - timings.renewMs) throw this.lostError();
  }

  async refresh(): Promise<void> {
    if (!this.lost && monotonic() - this.renewedAt <= timings.freshMs) return this.assertHeld();
    if (!(await this.renew())) throw this.lostError();
    this.assertHeld();
  }

  private lostError(): BackyError {
    return new BackyError(
      'LOCKED',
      `lost the lease ${this.path}: it could not be renewed in time, so another host may have taken it; nothing was committed or deleted after that`,
    );
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    await this.renewing;
    // Only our own version: a host that took the lease over keeps its own.
    await retire(this.backend, this.name, this.etag, this.body);
  }
}

/**
 * Ends the lease at `name` if it still has `version`: deletes it, or on an append-only store (whose
 * credentials may not delete) overwrites it, conditionally, with a released body that binds nobody.
 * True when it did.
 */
async function retire(backend: Backend, name: string, version: string, body?: LeaseBody): Promise<boolean> {
  if (backend.appendOnly !== true) return removeVersion(backend, name, version);
  const released = { ...(body ?? newBody('shared')), released: true, expires: 0 };
  return (await backend.save(name, Buffer.from(JSON.stringify(released)), { ifVersion: version })) != null;
}

function newBody(mode: LeaseBody['mode'], fence?: number): LeaseBody {
  const now = Date.now();
  return {
    host: hostname(),
    ...(HOST_ID != null ? { hostId: HOST_ID } : {}),
    pid: process.pid,
    mode,
    since: now,
    expires: now + timings.leaseMs,
    token: randomBytes(8).toString('hex'),
    ...(fence != null ? { fence } : {}),
  };
}

/**
 * The version of the lease at `name` when its holder is a writer fenced with a token lower than
 * `fence` (it cannot commit anymore: taking it over need not wait for it to lapse), else null.
 */
async function outfenced(backend: Backend, name: string, fence: number | undefined): Promise<string | null> {
  if (fence == null) return null;
  const current = await backend.stat(name);
  if (current == null) return null;
  const holder = parseLease(await backend.load(name));
  // Taken over on the version stat'ed: a body read from a newer version than that fails the write.
  return holder?.fence != null && holder.fence < fence ? current.version : null;
}

/** Creates the single-holder lease `name`, taking over a stale one; else the holder (null: unknown). */
async function takeSingle(
  backend: Backend,
  name: string,
  mode: LeaseBody['mode'],
  fence?: number,
): Promise<Lease | { holder: LeaseBody | null }> {
  for (;;) {
    let body = newBody(mode, fence);
    let sent = monotonic();
    const created = await backend.saveOnce(name, Buffer.from(JSON.stringify(body)));
    if (created != null) return new Lease(backend, name, leaseMode(mode), body, created.version, sent);
    const older = await outfenced(backend, name, fence);
    const judged: Judged = older != null ? { state: 'stale', version: older } : await judge(backend, name);
    if (judged.state === 'absent') continue; // released meanwhile
    if (judged.state === 'live') return { holder: judged.holder };
    // Stale: take it over, if nobody else did first (or its holder renewed it after all).
    body = newBody(mode, fence);
    sent = monotonic();
    const taken = await backend.save(name, Buffer.from(JSON.stringify(body)), { ifVersion: judged.version });
    if (taken != null) return new Lease(backend, name, leaseMode(mode), body, taken.version, sent);
    return { holder: parseLease(await backend.load(name)) };
  }
}

const leaseMode = (mode: LeaseBody['mode']): LockMode => (mode === 'shared' ? 'shared' : 'exclusive');

/**
 * The holders of live shared leases; stale ones are removed (on the version watched), so that their
 * holders, should they wake up, find them gone and do not commit.
 */
async function liveShared(backend: Backend): Promise<Array<LeaseBody | null>> {
  const live: Array<LeaseBody | null> = [];
  const stale = new Map<string, string>();
  const unclear = new Map<string, string>();
  for await (const item of backend.list('locks/shared/')) {
    const body = parseLease(await backend.load(item.name));
    // Released on an append-only store: nobody's, and left for purge with the admin credentials to delete.
    if (body?.released === true && backend.appendOnly === true) continue;
    const look = firstLook(backend, body);
    if (look === 'live') live.push(body);
    else (look === 'stale' ? stale : unclear).set(item.name, item.version);
  }
  if (live.length > 0) return live;
  if (unclear.size > 0) {
    // Counted from after the listing: never from before a version was seen.
    const watched = await watch(backend, unclear, monotonic());
    if (watched.changed != null) return [parseLease(await backend.load(watched.changed))];
    for (const name of watched.stale) stale.set(name, unclear.get(name)!);
  }
  for (const [name, version] of stale) {
    if (!(await retire(backend, name, version))) return [parseLease(await backend.load(name))];
  }
  return [];
}

async function retrying<T>(waitSeconds: number, attempt: () => Promise<T | string>): Promise<T> {
  const deadline = monotonic() + waitSeconds * 1000;
  for (;;) {
    const result = await attempt();
    if (typeof result !== 'string') return result;
    if (monotonic() >= deadline) throw new BackyError('LOCKED', result);
    await sleep(timings.pollMs);
  }
}

/** `work`'s result; when it throws, `lease` is released first. */
async function releasedOnError<T>(lease: Lease, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    await lease.release().catch(() => {});
    throw error;
  }
}

/** Leases need conditional writes atomic across the hosts that use the store (see BackendCapabilities). */
function assertLockable(backend: Backend): void {
  if (backend.capabilities.conditionalWrites === false)
    throw new BackyError(
      'STORE_INVALID',
      `${where(backend, '')} cannot be locked: its backend has no atomic conditional writes (capabilities.conditionalWrites is false), which the locks of a store without a local directory need`,
    );
}

/** The archive's one writer (see the comment on top). */
export async function lockWriter(backend: Backend, fence?: number): Promise<Lock> {
  assertLockable(backend);
  const got = await takeSingle(backend, 'locks/writer', 'writer', fence);
  if (got instanceof Lease) return got;
  throw new BackyError(
    'LOCKED',
    `${where(backend, '')} is being written by ${describe(got.holder)}; try again when it has finished`,
  );
}

/** Shared (backup, restore, verify) or exclusive (purge) use of the store's chunks. */
export async function lockStore(backend: Backend, mode: LockMode, waitSeconds = 0): Promise<Lock> {
  assertLockable(backend);
  return retrying(waitSeconds, async () => {
    if (mode === 'shared') {
      const body = newBody('shared');
      const name = `locks/shared/${body.token}`;
      const sent = monotonic();
      const saved = await backend.save(name, Buffer.from(JSON.stringify(body)));
      const lease = new Lease(backend, name, 'shared', body, saved?.version ?? '', sent);
      const purge = await releasedOnError(lease, () => judge(backend, 'locks/purge'));
      // A stale purge lease is removed on the version watched: its holder, should it wake, deletes nothing.
      if (purge.state === 'stale' && (await retire(backend, 'locks/purge', purge.version))) return lease;
      if (purge.state === 'absent') return lease;
      await lease.release();
      const holder = purge.state === 'live' ? purge.holder : parseLease(await backend.load('locks/purge'));
      return `chunk store ${where(backend, '')} is being purged by ${describe(holder)}; try again when purge has finished`;
    }
    const got = await takeSingle(backend, 'locks/purge', 'exclusive');
    if (!(got instanceof Lease))
      return `chunk store ${where(backend, '')} is being purged by ${describe(got.holder)}`;
    const users = await releasedOnError(got, () => liveShared(backend));
    if (users.length > 0) {
      await got.release();
      return `chunk store ${where(backend, '')} is in use by a backup, restore or verify (${describe(users[0]!)}${users.length > 1 ? ` and ${users.length - 1} more` : ''}); purge later`;
    }
    return got;
  });
}

/** Where object `name` of `backend` is, for messages: `s3://bucket/prefix/locks/writer`. */
export function where(backend: Backend, name: string): string {
  const root = backend.location;
  return `${root.endsWith('/') || name === '' ? root : `${root}/`}${name}`;
}
