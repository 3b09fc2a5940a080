import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Backend } from '../backend/contract.js';
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
 * A lease lasts LEASE_MS and is renewed every RENEW_MS; one that expired, or whose holder was a process
 * of this host that is gone, is its crashed holder's and may be taken over (conditionally on the version seen, so only one taker wins: where the backend has conditional writes). A holder that could not
 * renew in time must assume it lost the lease: `assertHeld` throws, and the backup does not commit,
 * purge does not delete.
 */
export const LEASE_MS = 120_000;
const RENEW_MS = 20_000;
const POLL_MS = 1000;

interface LeaseBody {
  host: string;
  /** This machine's boot and PID namespace (see HOST_ID); host names are not unique (cloned VMs). */
  hostId?: string;
  pid: number;
  mode: LockMode | 'writer';
  since: number;
  expires: number;
  token: string;
}

function describe(body: LeaseBody): string {
  return `host ${body.host} (pid ${body.pid}) since ${new Date(body.since).toISOString()}`;
}

/**
 * Whether a lease still binds: not lapsed, and not held by a process of this host that is gone (a
 * backup killed with -9 leaves its lease; on its own host that is known at once, elsewhere after the
 * lease lapses).
 */
function live(body: LeaseBody | null): body is LeaseBody {
  if (body == null || body.expires <= Date.now()) return false;
  if (body.hostId == null || body.hostId !== HOST_ID || body.pid === process.pid) return true;
  try {
    process.kill(body.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Who "this host" is for the rule that a gone process's lease binds no more: the kernel's boot ID and
 * this PID namespace (two containers, or two clones of a VM with one host name, differ in them). Null
 * when they cannot be read: then the rule is off and only lapsed leases are taken over.
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

/** A held lease: renewed in the background until released. */
class Lease implements Lock {
  private etag: string;
  private renewedAt = Date.now();
  private lost = false;
  private timer: NodeJS.Timeout;
  private released = false;
  private renewing = false;

  constructor(
    private readonly backend: Backend,
    private readonly name: string,
    readonly mode: LockMode,
    private body: LeaseBody,
    etag: string,
    /** Shared leases are own objects: renewed without a condition. */
    private readonly conditional: boolean,
  ) {
    this.etag = etag;
    this.timer = setInterval(() => void this.renew(), RENEW_MS);
    this.timer.unref();
  }

  get path(): string {
    return where(this.backend, this.name);
  }

  private async renew(): Promise<void> {
    if (this.released || this.lost || this.renewing) return;
    const now = Date.now();
    // Once lapsed, others may have acted on it (a purge): a late renewal must not make it valid again.
    if (now >= this.body.expires) {
      this.lost = true;
      return;
    }
    const body = { ...this.body, expires: now + LEASE_MS };
    this.renewing = true;
    try {
      const saved = await this.backend.save(
        this.name,
        Buffer.from(JSON.stringify(body)),
        this.conditional ? { ifVersion: this.etag } : {},
      );
      if (saved == null) {
        this.lost = true; // taken over: we were presumed dead
        return;
      }
      this.etag = saved.version;
      this.body = body;
      this.renewedAt = now;
    } catch {
      // Retried at the next tick; assertHeld tells when it has been too long.
    } finally {
      this.renewing = false;
    }
  }

  assertHeld(): void {
    if (this.lost || Date.now() - this.renewedAt > LEASE_MS - RENEW_MS) {
      throw new BackyError(
        'LOCKED',
        `lost the lease ${this.path}: it could not be renewed in time, so another host may have taken it; nothing was committed or deleted after that`,
      );
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    if (this.lost) return;
    await this.backend.remove(this.name);
  }
}

function newBody(mode: LeaseBody['mode']): LeaseBody {
  const now = Date.now();
  return {
    host: hostname(),
    ...(HOST_ID != null ? { hostId: HOST_ID } : {}),
    pid: process.pid,
    mode,
    since: now,
    expires: now + LEASE_MS,
    token: randomBytes(8).toString('hex'),
  };
}

/**
 * Creates the single-holder lease `name`, taking over an expired one. Null: someone holds it (their
 * lease body is returned for the message).
 */
async function takeSingle(
  backend: Backend,
  name: string,
  mode: LeaseBody['mode'],
): Promise<{ etag: string; body: LeaseBody } | { holder: LeaseBody | null }> {
  const body = newBody(mode);
  const bytes = Buffer.from(JSON.stringify(body));
  const created = await backend.saveOnce(name, bytes);
  if (created != null) return { etag: created.version, body };
  const current = await backend.stat(name);
  if (current == null) return takeSingle(backend, name, mode); // released meanwhile
  const holder = parseLease(await backend.load(name));
  if (live(holder)) return { holder };
  // Lapsed, its holder gone, or unreadable: take it over, if nobody else did first.
  const taken = await backend.save(name, bytes, { ifVersion: current.version });
  return taken != null ? { etag: taken.version, body } : { holder };
}

async function liveShared(backend: Backend): Promise<LeaseBody[]> {
  const out: LeaseBody[] = [];
  for await (const item of backend.list('locks/shared/')) {
    const body = parseLease(await backend.load(item.name));
    if (live(body)) out.push(body);
  }
  return out;
}

async function retrying<T>(waitSeconds: number, attempt: () => Promise<T | string>): Promise<T> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    const result = await attempt();
    if (typeof result !== 'string') return result;
    if (Date.now() >= deadline) throw new BackyError('LOCKED', result);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** The archive's one writer (see the comment on top). */
export async function lockWriter(backend: Backend): Promise<Lock> {
  const got = await takeSingle(backend, 'locks/writer', 'writer');
  if ('etag' in got) return new Lease(backend, 'locks/writer', 'exclusive', got.body, got.etag, true);
  throw new BackyError(
    'LOCKED',
    `${where(backend, '')} is being written by ${got.holder != null ? describe(got.holder) : 'another host'}; try again when it has finished`,
  );
}

/** Shared (backup, restore, verify) or exclusive (purge) use of the store's chunks. */
export async function lockStore(backend: Backend, mode: LockMode, waitSeconds = 0): Promise<Lock> {
  return retrying(waitSeconds, async () => {
    if (mode === 'shared') {
      const body = newBody('shared');
      const name = `locks/shared/${body.token}`;
      const saved = await backend.save(name, Buffer.from(JSON.stringify(body)));
      const purge = parseLease(await backend.load('locks/purge'));
      if (live(purge)) {
        await backend.remove(name);
        return `chunk store ${where(backend, '')} is being purged by ${describe(purge)}; try again when purge has finished`;
      }
      return new Lease(backend, name, 'shared', body, saved?.version ?? '', false);
    }
    const got = await takeSingle(backend, 'locks/purge', 'exclusive');
    if (!('etag' in got))
      return `chunk store ${where(backend, '')} is being purged by ${got.holder != null ? describe(got.holder) : 'another host'}`;
    const users = await liveShared(backend);
    if (users.length > 0) {
      await backend.remove('locks/purge');
      return `chunk store ${where(backend, '')} is in use by a backup, restore or verify (${describe(users[0]!)}${users.length > 1 ? ` and ${users.length - 1} more` : ''}); purge later`;
    }
    return new Lease(backend, 'locks/purge', 'exclusive', got.body, got.etag, true);
  });
}

/** Where object `name` of `backend` is, for messages: `s3://bucket/prefix/locks/writer`. */
export function where(backend: Backend, name: string): string {
  const root = backend.location;
  return `${root.endsWith('/') || name === '' ? root : `${root}/`}${name}`;
}
