/**
 * One point in time of a running QEMU's disk, exported over NBD. In QEMU, for drive node D:
 *
 *   1. a fleecing image (an empty qcow2 in a private directory) is added as node F, backed by D;
 *   2. one `transaction`: `blockdev-backup sync=none` D → F (a copy-before-write filter goes on top of
 *      D, and moves a guest device along: from now on every guest write first copies the old data to F),
 *      `block-dirty-bitmap-add backy-N` (recording from this instant) and `block-dirty-bitmap-disable`
 *      of the parent's bitmap (which then holds exactly the writes since the parent);
 *   3. `nbd-server-start` on a unix socket in the private directory, `block-export-add` of F read-only,
 *      with the parent's bitmap as `qemu:dirty-bitmap:NAME`. F reads as D was at step 2.
 *
 * `close` undoes it in reverse (export, bitmaps, job, node, server, directory) on every way out.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BackyError } from '@backy/core/source';
import type { Logger } from 'pino';
import { removeBitmaps, revive } from './bitmaps.js';
import { type BlockNode, blockNodes } from './drive.js';
import { type FreezeOptions, type FreezeOutcome, withFrozenGuest } from './guest-agent.js';
import { cancelJob, deleteExport, RUN_DIR_PREFIX, type RunRecord, writeRunRecord } from './leftovers.js';
import { BITMAP_PREFIX, nameOf, type Owner, ownerTag, setActive } from './owner.js';
import type { QmpClient } from './qmp.js';

export const EXPORT_NAME = 'backy';

export interface PointInTimeOptions {
  qmp: QmpClient;
  qmpPath: string;
  drive: BlockNode;
  owner: Owner;
  /** Where the run's private directory (fleecing image, NBD socket) goes. */
  runDirParent: string;
  /** The bitmap to export (the parent's), disabled at the point in time; null for a full backup. */
  from: string | null;
  /** The bitmap this backup adds: `backy-<revision id>`. */
  bitmap: string;
  freeze: FreezeOptions | null;
  qemuImg?: string;
  logger: Logger;
  /** Called right before the transaction, with the guest frozen if it is (tests). */
  beforePointInTime?: () => void | Promise<void>;
  /** Called right after the transaction (tests: write into the disk now). */
  onPointInTime?: () => void | Promise<void>;
}

/** What a point in time made, so that `close` undoes exactly that. */
interface Made {
  dir?: string;
  fleece?: string;
  job?: string;
  bitmapAdded?: boolean;
  fromDisabled?: boolean;
  server?: boolean;
  exportId?: string;
}

export class PointInTime {
  private readonly made: Made = {};
  private closed = false;
  /** The NBD socket of the export. */
  socket = '';
  freeze: FreezeOutcome = { method: 'direct', reason: 'no-agent' };

  private constructor(private readonly o: PointInTimeOptions) {}

  /** Takes the point in time and exports it; on failure undoes what it did and throws. */
  static async take(options: PointInTimeOptions): Promise<PointInTime> {
    const pit = new PointInTime(options);
    setActive(options.owner, true);
    try {
      await pit.setUp();
      return pit;
    } catch (error) {
      await pit
        .close(false)
        .catch((cleanup: Error) =>
          options.logger.warn({ err: cleanup }, `cleaning up in QEMU failed: ${cleanup.message}`),
        );
      throw error;
    }
  }

  private async setUp(): Promise<void> {
    const { qmp, drive, owner, logger: log } = this.o;
    const node = drive.nodeName;
    const dir = join(this.o.runDirParent, `${RUN_DIR_PREFIX}${ownerTag(owner)}`);
    this.socket = join(dir, 'nbd.sock');
    // A unix socket's path has room for 107 bytes (sun_path); QEMU's error would not name the option.
    if (Buffer.byteLength(this.socket) > 107)
      throw new BackyError(
        'CONFIG_INVALID',
        `source.fleecing-dir ${this.o.runDirParent} is too deep for the NBD socket backy puts there (${this.socket} is over 107 bytes): choose a shorter path`,
      );
    await mkdir(this.o.runDirParent, { recursive: true });
    await mkdir(dir, { mode: 0o700 });
    this.made.dir = dir;
    const record: RunRecord = { qmp: this.o.qmpPath, owner, server: false, socket: this.socket };
    await writeRunRecord(dir, record);

    const image = join(dir, 'fleece.qcow2');
    await createImage(this.o.qemuImg ?? 'qemu-img', image, drive.size);
    const fleece = nameOf('fleece', owner);
    await qmp.execute('blockdev-add', {
      driver: 'qcow2',
      'node-name': fleece,
      file: { driver: 'file', filename: image },
      backing: node,
    });
    this.made.fleece = fleece;

    const job = nameOf('job', owner);
    const persistent = drive.driver === 'qcow2';
    const actions = [
      { type: 'block-dirty-bitmap-add', data: { node, name: this.o.bitmap, persistent } },
      ...(this.o.from != null
        ? [{ type: 'block-dirty-bitmap-disable', data: { node, name: this.o.from } }]
        : []),
      {
        type: 'blockdev-backup',
        data: {
          'job-id': job,
          device: node,
          target: fleece,
          sync: 'none',
          'filter-node-name': nameOf('filter', owner),
        },
      },
    ];
    const freeze = this.o.freeze && {
      ...this.o.freeze,
      freezing: (frozen: boolean) =>
        writeRunRecord(dir, {
          ...record,
          server: false,
          ...(frozen ? { freezing: this.o.freeze!.socket } : {}),
        }),
    };
    const { outcome } = await withFrozenGuest(freeze, async () => {
      await this.o.beforePointInTime?.();
      await qmp.execute('transaction', { actions });
      // Recorded at once: a thaw that fails after this still leaves all of it to undo.
      Object.assign(this.made, { job, bitmapAdded: true, fromDisabled: this.o.from != null });
    });
    this.freeze = outcome;
    log.info(
      { job, fleece, bitmap: this.o.bitmap, persistent, consistency: outcome.method },
      'point in time taken',
    );
    await this.o.onPointInTime?.();

    await qmp
      .execute('nbd-server-start', { addr: { type: 'unix', data: { path: this.socket } } })
      .catch((error: Error) => {
        if (/already running/i.test(error.message))
          throw new BackyError(
            'SOURCE_FAILED',
            `the QEMU at ${this.o.qmpPath} already runs an NBD server that backy did not start (libvirt's backup, or another tool): backy needs its own; stop that one (nbd-server-stop) or back up when it is done`,
            { cause: error },
          );
        throw error;
      });
    this.made.server = true;
    await writeRunRecord(dir, { ...record, server: true });
    const exportId = nameOf('export', owner);
    await qmp.execute('block-export-add', {
      type: 'nbd',
      id: exportId,
      'node-name': fleece,
      name: EXPORT_NAME,
      writable: false,
      ...(this.o.from != null ? { bitmaps: [this.o.from] } : {}),
    });
    this.made.exportId = exportId;
  }

  /**
   * Undoes the point in time: the export first (it holds the parent's bitmap), then the bitmaps
   * (committed: the older backy bitmaps go; failed: this backup's bitmap is merged back into the
   * parent's, which records again), the job, the fleecing node, the server and the directory.
   */
  async close(success: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const { qmp, logger: log } = this.o;
    const node = this.o.drive.nodeName;
    const m = this.made;
    const errors: Error[] = [];
    const step = async (what: string, run: () => Promise<unknown>) => {
      try {
        await run();
      } catch (error) {
        errors.push(error as Error);
        log.warn({ err: error }, `${what} failed: ${(error as Error).message}`);
      }
    };
    try {
      if (m.exportId != null) await step('deleting the export', () => deleteExport(qmp, m.exportId!));
      if (m.bitmapAdded) await step('rotating the dirty bitmaps', () => this.rotate(success, node));
      if (m.job != null) await step('ending the backup job', () => cancelJob(qmp, m.job!));
      if (m.fleece != null)
        await step('removing the fleecing node', () =>
          qmp.execute('blockdev-del', { 'node-name': m.fleece }),
        );
      if (m.server) await step('stopping the NBD server', () => qmp.execute('nbd-server-stop'));
      if (m.dir != null)
        await step('removing the run directory', () => rm(m.dir!, { recursive: true, force: true }));
    } finally {
      setActive(this.o.owner, false);
    }
    if (errors.length > 0)
      throw new BackyError(
        'SOURCE_FAILED',
        `cleaning up in QEMU: ${errors.map((e) => e.message).join('; ')} (the next backup removes what is left)`,
      );
  }

  private async rotate(success: boolean, node: string): Promise<void> {
    const { qmp, logger: log } = this.o;
    if (!success) {
      // The parent's bitmap must again hold every write since the parent, this run's too.
      if (this.made.fromDisabled) await revive(qmp, node, this.o.from!, [this.o.bitmap]);
      await removeBitmaps(qmp, node, [this.o.bitmap], log, 'removed the bitmap of the failed backup');
      return;
    }
    const drive = (await blockNodes(qmp)).find((n) => n.nodeName === node);
    const older = (drive?.bitmaps ?? [])
      .map((b) => b.name)
      .filter((name) => name.startsWith(BITMAP_PREFIX) && name !== this.o.bitmap);
    await removeBitmaps(qmp, node, older, log, 'removed an older backy bitmap');
  }
}

async function createImage(qemuImg: string, path: string, size: number): Promise<void> {
  try {
    await promisify(execFile)(qemuImg, ['create', '-q', '-f', 'qcow2', path, String(size)]);
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    throw new BackyError(
      'SOURCE_FAILED',
      e.code === 'ENOENT'
        ? `${qemuImg} is not installed (Debian: qemu-utils)`
        : `creating the fleecing image ${path}: ${(e.stderr ?? e.message).trim().split('\n').at(-1)}`,
      { cause: error },
    );
  }
}
