/**
 * Leftovers of qemu-source backups whose backy process died (kill -9, power loss of the backup host):
 * exports, block jobs and fleecing nodes named `backy-<role>-<owner>` whose owner process is gone, the
 * NBD server such a run started, and its private directory with the fleecing image. Nothing without
 * backy's name, nothing of a live owner, and no NBD server backy cannot prove it started is touched.
 */
import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { BackyError } from '@backy/core/source';
import type { Logger } from 'pino';
import { blockNodes, jobsOnNode } from './drive.js';
import { thawGuest } from './guest-agent.js';
import { type Owner, ownerAlive, ownerTag, parseName } from './owner.js';
import type { QmpClient } from './qmp.js';

/** The private directory of a run in the fleecing dir: `backy-qemu-<owner>`, holding `owner.json`. */
export const RUN_DIR_PREFIX = 'backy-qemu-';

/** What a run records in its directory, so that a later run can clean up after it. */
export interface RunRecord {
  qmp: string;
  owner: Owner;
  /** True once the run started QEMU's NBD server (on `socket`). */
  server: boolean;
  socket: string;
  /** The guest agent's socket while the run may have the guest frozen (from right before the freeze until the thaw is confirmed). */
  freezing?: string;
}

export async function writeRunRecord(dir: string, record: RunRecord): Promise<void> {
  const path = join(dir, 'owner.json');
  await writeFile(`${path}.tmp`, JSON.stringify(record), { mode: 0o600, flush: true });
  await rename(`${path}.tmp`, path);
}

const deadBacky = (name: string, role: string) => {
  const parsed = parseName(name);
  return parsed != null && parsed.role === role && !ownerAlive(parsed.owner) ? parsed.owner : null;
};

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  for (const started = Date.now(); !(await check()); ) {
    if (Date.now() - started > timeoutMs)
      throw new BackyError('SOURCE_FAILED', `${what} within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const exportIds = async (qmp: QmpClient) =>
  (await qmp.execute<{ id: string }[]>('query-block-exports')).map((e) => e.id);
const jobIds = async (qmp: QmpClient) =>
  (await qmp.execute<{ device: string }[]>('query-block-jobs')).map((j) => j.device);

/** Deletes export `id` and waits until QEMU has (NBD clients are disconnected). */
export async function deleteExport(qmp: QmpClient, id: string): Promise<void> {
  await qmp.execute('block-export-del', { id, mode: 'hard' });
  await until(async () => !(await exportIds(qmp)).includes(id), 30_000, `export ${id} was not deleted`);
}

/** Cancels block job `id` and waits until it is gone. */
export async function cancelJob(qmp: QmpClient, id: string): Promise<void> {
  await qmp.execute('block-job-cancel', { device: id, force: true });
  await until(async () => !(await jobIds(qmp)).includes(id), 30_000, `block job ${id} did not end`);
}

/** Removes what dead backy runs left in this QEMU and in `runDirParent`; returns what it removed. */
export async function removeLeftovers(
  qmp: QmpClient,
  qmpPath: string,
  runDirParent: string,
  log: Logger,
): Promise<string[]> {
  const removed: string[] = [];
  for (const id of await exportIds(qmp)) {
    if (deadBacky(id, 'export') == null) continue;
    await deleteExport(qmp, id);
    removed.push(`export ${id}`);
  }
  for (const id of await jobIds(qmp)) {
    if (deadBacky(id, 'job') == null) continue;
    await cancelJob(qmp, id);
    removed.push(`block job ${id}`);
  }
  for (const node of await blockNodes(qmp)) {
    if (deadBacky(node.nodeName, 'fleece') == null) continue;
    await qmp.execute('blockdev-del', { 'node-name': node.nodeName });
    removed.push(`block node ${node.nodeName}`);
  }
  removed.push(...(await removeRunDirs(qmp, qmpPath, runDirParent)));
  if (removed.length > 0)
    log.warn(
      { removed },
      `removed what a backup that did not finish left behind in QEMU: ${removed.join(', ')}`,
    );
  return removed;
}

/** The directories of dead runs against this QEMU, and the NBD server one of them started. */
async function removeRunDirs(qmp: QmpClient, qmpPath: string, parent: string): Promise<string[]> {
  const removed: string[] = [];
  let names: string[];
  try {
    names = (await readdir(parent)).filter((n) => n.startsWith(RUN_DIR_PREFIX));
  } catch {
    return removed;
  }
  for (const name of names) {
    const dir = join(parent, name);
    let record: RunRecord;
    try {
      record = JSON.parse(await readFile(join(dir, 'owner.json'), 'utf8')) as RunRecord;
    } catch {
      continue; // Not provably ours, or not yet written by a run that is starting.
    }
    if (record.qmp !== qmpPath || name !== `${RUN_DIR_PREFIX}${ownerTag(record.owner)}`) continue;
    if (ownerAlive(record.owner)) continue;
    // Its server, if it started one and nothing else is exported on it now. Something listening on the
    // socket in the run's private directory proves it: only this QEMU can have put it there, and a
    // run killed right after nbd-server-start had no time to record it.
    if ((record.server || (await listening(record.socket))) && (await exportIds(qmp)).length === 0) {
      await qmp.execute('nbd-server-stop').then(
        () => removed.push(`NBD server on ${record.socket}`),
        () => {},
      );
    }
    // It died with the guest frozen: the guest waits for a thaw that only backy can give.
    if (record.freezing != null) {
      await thawGuest(record.freezing).then(
        (count) => removed.push(`the guest's freeze (thawed ${count} file systems)`),
        () => {},
      );
    }
    await rm(dir, { recursive: true, force: true });
    removed.push(`directory ${dir}`);
  }
  return removed;
}

/** True if something accepts connections on the unix socket `path`. */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Throws a one-line error when another backup (backy's or another tool's) works on `node`. */
export async function refuseConcurrentJobs(qmp: QmpClient, node: string, drive: string): Promise<void> {
  const jobs = await jobsOnNode(qmp, node);
  for (const job of jobs ?? []) {
    const parsed = parseName(job);
    if (parsed != null && parsed.role === 'job')
      throw new BackyError(
        'LOCKED',
        `another backy backup (pid ${parsed.owner.pid}) is running on drive ${drive}: not starting a second one`,
      );
    throw new BackyError(
      'LOCKED',
      `block job ${job} is already running on drive ${drive} (another backup or a mirror): backy does not start a backup beside it`,
    );
  }
}
