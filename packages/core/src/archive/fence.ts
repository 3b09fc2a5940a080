// The archive's fencing token (fleet mode, docs/fleet.md): the file `fleet-fence` in the archive
// directory, one line of JSON `{"token","server","at"}`, known to this module alone. A fleet server that
// takes a job's lock raises the fence to its lock's token; a backup started with a token commits only
// while the fence still holds that token. Raising and the commit's check both happen under the archive's
// revisions lock, and the `.rev` is written under that same lock, so of a stale holder's commit and a
// newer holder's raise one comes wholly first: the stale commit is refused, or the newer holder sees the
// revision before it decides whether its slot is still due.
//
// A remote store (S3) has a fence of its own, `locks/fence` (repository/store-fence.ts), because the
// archive directories of the servers need not be one shared directory: the backup raises it to its
// token under the store's writer lease before it reads the source, and checks it again right before the
// store's `.rev` is written, after renewing that lease. A newer backup can take the writer lease, and so
// raise the fence, only a whole lease after this one's last renewal: the fence read after the renewal
// sees every raise that a `.rev` landing within that lease could race with.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackyError } from '../errors.js';
import { writeFileAtomic } from '../fs-util.js';
import { type Lock, proveHeld } from '../lock.js';
import type { ChunkStore, Fence } from '../store/contract.js';
import { withRevisionsLock } from './locks.js';

export type { Fence };
export const FENCE_FILE = 'fleet-fence';

/** The archive's fence, or null when no fleet server ever raised one. A damaged file is an error. */
export async function readFence(dir: string): Promise<Fence | null> {
  const path = join(dir, FENCE_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BackyError('IO', `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`, {
      cause: error,
    });
  }
  try {
    const fence = JSON.parse(text) as Fence;
    if (Number.isSafeInteger(fence.token) && fence.token > 0 && typeof fence.server === 'string')
      return fence;
  } catch {}
  throw new BackyError(
    'IO',
    `${path} is damaged (not a fleet fence): remove it only when no fleet server runs this job`,
  );
}

function fencedError(
  dir: string,
  token: number,
  fence: Fence | null,
  where = "the archive's fence",
): BackyError {
  const newer =
    fence == null ? 'no fence at all' : `token ${fence.token} of server ${fence.server} since ${fence.at}`;
  return new BackyError(
    'LOCKED',
    `${dir}: fenced: this backup holds fleet token ${token}, but ${where} has ${newer}; another server has taken the job, so nothing is committed`,
  );
}

/**
 * Raises the fence of the archive `dir` to `token` for `server` (a lower one is never written over a
 * higher one). Throws LOCKED when the fence is higher already: a newer holder took the job meanwhile.
 */
export async function raiseFence(dir: string, token: number, server: string): Promise<void> {
  await withRevisionsLock(dir, async () => {
    const current = await readFence(dir);
    if (current != null && current.token > token) throw fencedError(dir, token, current);
    if (current?.token === token) return;
    const fence: Fence = { token, server, at: new Date().toISOString() };
    await writeFileAtomic(join(dir, FENCE_FILE), `${JSON.stringify(fence)}\n`, { mode: 0o640 });
  });
}

/** Throws LOCKED unless the fence holds exactly `token`; call it with the revisions lock held. */
export async function assertFence(dir: string, token: number): Promise<void> {
  const current = await readFence(dir);
  if (current?.token !== token) throw fencedError(dir, token, current);
}

/**
 * The commit guard of a backup of `archive` started with `token` (none without one), after checking the
 * fence once already: a server that lost the job long ago learns it before reading the source. With a
 * remote store it raises the store's fence to `token` first (refused when higher), and the guard renews
 * `writer` (the backup lock, which holds the store's writer lease) before it reads that fence again.
 */
export async function fenceGuard(
  archive: { path: string; store: ChunkStore },
  token: number | undefined,
  writer: Lock,
): Promise<(() => Promise<void>) | undefined> {
  if (token == null) return undefined;
  const dir = archive.path;
  await withRevisionsLock(dir, () => assertFence(dir, token));
  const catalog = archive.store.catalog;
  if (catalog == null) return () => assertFence(dir, token);
  const where = `the store's fence (${archive.store.root})`;
  // The directory's fence holds this token (checked above): its server is the one running this backup.
  const server = (await readFence(dir))?.server ?? 'unknown';
  const higher = await catalog.raiseFence(token, server);
  if (higher != null) throw fencedError(dir, token, higher, where);
  return async () => {
    await assertFence(dir, token);
    await proveHeld([writer]);
    const fence = await catalog.fence();
    if (fence?.token !== token) throw fencedError(dir, token, fence, where);
  };
}
