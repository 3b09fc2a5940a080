import type { Backend } from '../backend/contract.js';
import { BackyError } from '../errors.js';
import type { Fence } from '../store/contract.js';
import { where } from './leases.js';

/**
 * Fleet mode's fence in a remote store (docs/fleet.md): the object `locks/fence`, one line of JSON
 * `{"token","server","at"}`, next to the leases (and so, with Object Lock, in the unversioned lease
 * bucket, where conditional writes work). Per-server archive directories do not share their
 * `fleet-fence` file; every server's backups reach the store, so a stale server's backup finds the newer
 * token here. It only rises: every write is conditional on the version read (create-if-absent, or
 * compare-and-swap), so of two raisers racing one wins and the other reads again.
 */
export const STORE_FENCE = 'locks/fence';

/** Reads that fail every conditional write give up after this many (a versioned RGW 16.2 bucket). */
const ATTEMPTS = 8;

function parse(backend: Backend, bytes: Buffer): Fence {
  try {
    const fence = JSON.parse(bytes.toString('utf8')) as Fence;
    if (Number.isSafeInteger(fence.token) && fence.token > 0 && typeof fence.server === 'string')
      return fence;
  } catch {}
  throw new BackyError(
    'IO',
    `${where(backend, STORE_FENCE)} is damaged (not a fleet fence): remove it only when no fleet server runs this job`,
  );
}

/** The store's fence and its version, or null when none was raised. */
async function current(backend: Backend): Promise<{ fence: Fence; version: string } | null> {
  const info = await backend.stat(STORE_FENCE);
  if (info == null) return null;
  // Read after the stat: a body newer than `version` only makes the write below fail and look again.
  const bytes = await backend.load(STORE_FENCE);
  return bytes == null ? null : { fence: parse(backend, bytes), version: info.version };
}

/** The store's fence, or null when no fleet backup raised one. A damaged object is an error. */
export async function readStoreFence(backend: Backend): Promise<Fence | null> {
  return (await current(backend))?.fence ?? null;
}

/** Raises the fence to `token` (see RevisionCatalog.raiseFence): null, or the higher fence. */
export async function raiseStoreFence(
  backend: Backend,
  token: number,
  server: string,
): Promise<Fence | null> {
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const seen = await current(backend);
    if (seen != null && seen.fence.token > token) return seen.fence;
    if (seen?.fence.token === token) return null;
    const body = Buffer.from(`${JSON.stringify({ token, server, at: new Date().toISOString() })}\n`);
    const written =
      seen == null
        ? await backend.saveOnce(STORE_FENCE, body)
        : await backend.save(STORE_FENCE, body, { ifVersion: seen.version });
    if (written != null) return null;
  }
  throw new BackyError(
    'STORE_INVALID',
    `${where(backend, STORE_FENCE)}: raising the fleet fence failed ${ATTEMPTS} times (its conditional writes always fail: a versioned bucket? see docs/immutable-backups.md)`,
  );
}
