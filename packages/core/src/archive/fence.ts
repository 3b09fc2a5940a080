// The archive's fencing token (fleet mode, docs/fleet.md): the file `fleet-fence` in the archive
// directory, one line of JSON `{"token","server","at"}`, known to this module alone. A fleet server that
// takes a job's lock raises the fence to its lock's token; a backup started with a token commits only
// while the fence still holds that token. Raising and the commit's check both happen under the archive's
// revisions lock, and the `.rev` is written under that same lock, so of a stale holder's commit and a
// newer holder's raise one comes wholly first: the stale commit is refused, or the newer holder sees the
// revision before it decides whether its slot is still due.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackyError } from '../errors.js';
import { writeFileAtomic } from '../fs-util.js';
import { withRevisionsLock } from './locks.js';

export const FENCE_FILE = 'fleet-fence';

export interface Fence {
  /** The Consul lock's ModifyIndex when it was taken: higher for every later holder. */
  token: number;
  /** The fleet server that took it. */
  server: string;
  /** When it was raised (ISO time): for messages only. */
  at: string;
}

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

function fencedError(dir: string, token: number, fence: Fence | null): BackyError {
  const newer =
    fence == null ? 'no fence at all' : `token ${fence.token} of server ${fence.server} since ${fence.at}`;
  return new BackyError(
    'LOCKED',
    `${dir}: fenced: this backup holds fleet token ${token}, but the archive's fence has ${newer}; another server has taken the job, so nothing is committed`,
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
 * The commit guard of a backup started with `token` (none without one), after checking the fence once
 * already: a server that lost the job long ago learns it before reading the source.
 */
export async function fenceGuard(
  dir: string,
  token: number | undefined,
): Promise<(() => Promise<void>) | undefined> {
  if (token == null) return undefined;
  const guard = () => assertFence(dir, token);
  await withRevisionsLock(dir, guard);
  return guard;
}
