import { type BackupContext, BackyError } from '@backy/core/source';
import type { Logger } from 'pino';
import { applyRawImage, applyRbdDiff } from './apply-diff.js';
import { parseRbdDiff } from './diff-stream.js';
import { imageSpec, type RbdSnapshot } from './rbd.js';
import { type MakeSnapshotArgs, type RbdImage, type SnapshotLifecycle, snapshotOf } from './snapshots.js';

/** What a backup needs of the source. */
export interface BackupSetup {
  target: RbdImage;
  snapshots: SnapshotLifecycle;
  makeSnapshot(args: MakeSnapshotArgs): Promise<void>;
  /** The `full-always` option: never a diff. */
  fullAlways: boolean;
}

/** The snapshot the backup diffs against, or why it reads the whole image. */
type DiffBase = { from: string } | { from: null; reason: string };

/** Decides whether the backup can be a diff against the parent's snapshot, and says why not. */
function diffBase(
  setup: Pick<BackupSetup, 'target' | 'fullAlways'>,
  ctx: BackupContext,
  snapshots: RbdSnapshot[],
): DiffBase {
  const { pool, image } = setup.target;
  if (setup.fullAlways) return { from: null, reason: 'full-always is set' };
  if (ctx.parent == null) return { from: null, reason: 'no trusted parent revision' };
  const parent = ctx.parent.revision;
  const info = parent.source_info ?? {};
  if ((info.pool != null && info.pool !== pool) || (info.image != null && info.image !== image)) {
    return {
      from: null,
      reason: `the parent revision was made from ${String(info.pool)}/${String(info.image)}`,
    };
  }
  const from = typeof info.snapshot === 'string' ? info.snapshot : snapshotOf(parent.uuid);
  const snap = snapshots.find((s) => s.name === from);
  if (snap == null) return { from: null, reason: `the parent's snapshot ${from} no longer exists` };
  if (snap.size !== ctx.parent.reader.size) {
    return {
      from: null,
      reason: `the parent's snapshot ${from} has ${snap.size} bytes, the parent revision ${ctx.parent.reader.size}`,
    };
  }
  return { from };
}

/**
 * One backup: makes the revision's snapshot, starts removing the snapshots it no longer needs, and reads
 * the snapshot as a diff against the parent's or whole.
 */
export async function backupImage(setup: BackupSetup, ctx: BackupContext): Promise<void> {
  const { rbd, pool, image, spec } = setup.target;
  const { signal } = ctx;
  const snapshot = snapshotOf(ctx.revision.uuid);
  const log = ctx.logger.child({ image: spec, snapshot });
  signal.throwIfAborted();
  const run = setup.snapshots.begin(ctx.revision.uuid);
  await setup.makeSnapshot({ rbd, pool, image, snapshot, logger: log, signal });
  ctx.remember({ pool, image, snapshot });
  const snapshots = await rbd.snapList(pool, image, signal);
  const snap = snapshots.find((s) => s.name === snapshot);
  if (snap == null)
    throw new BackyError(
      'SOURCE_FAILED',
      `snapshot ${imageSpec(pool, image, snapshot)} does not exist after it was made`,
    );
  const base = diffBase(setup, ctx, snapshots);
  setup.snapshots.removeStale(run, snapshots, base.from, ctx.logger);
  if (base.from != null) await readDiff(setup.target, ctx, snap, base.from, log);
  else await readWhole(setup.target, ctx, snap, base.reason, log);
}

/** Applies `rbd export-diff` from the parent's snapshot `from` to the parent's chunks. */
async function readDiff(
  target: RbdImage,
  ctx: BackupContext,
  snap: RbdSnapshot,
  from: string,
  log: Logger,
): Promise<void> {
  const { rbd, pool, image } = target;
  const { signal, writer } = ctx;
  const snapshot = snap.name;
  const wholeObject = await rbd.supportsWholeObject();
  log.info({ from, wholeObject }, 'incremental backup with rbd export-diff');
  const result = await rbd.exportDiff(
    { pool, image, snapshot, fromSnapshot: from, wholeObject, signal },
    (stdout) =>
      applyRbdDiff(parseRbdDiff(stdout), {
        writer,
        base: ctx.parent!.reader,
        expectFrom: from,
        expectTo: snapshot,
        signal,
        onData: (bytes) => ctx.reportRead(bytes),
        onProgress: (done, total) => ctx.progress(done, total),
      }),
  );
  if (result.size !== snap.size) {
    throw new BackyError(
      'SOURCE_FAILED',
      `rbd export-diff reported an image size of ${result.size}, the snapshot has ${snap.size}`,
    );
  }
  log.info(
    {
      changed: result.chunksChanged,
      patched: result.chunksPatched,
      kept: result.chunksKept,
      data: result.bytesData,
      zeroed: result.bytesZeroed,
    },
    'export-diff applied',
  );
  ctx.remember({ mode: 'diff', from_snapshot: from });
}

/** Reads the whole snapshot with `rbd export`. */
async function readWhole(
  target: RbdImage,
  ctx: BackupContext,
  snap: RbdSnapshot,
  reason: string,
  log: Logger,
): Promise<void> {
  const { rbd, pool, image } = target;
  const { signal, writer } = ctx;
  log.info({ reason, size: snap.size }, 'full backup with rbd export');
  await rbd.export({ pool, image, snapshot: snap.name, signal }, (stdout) =>
    applyRawImage(stdout, {
      writer,
      size: snap.size,
      signal,
      onData: (bytes) => ctx.reportRead(bytes),
      onProgress: (done, total) => ctx.progress(done, total),
    }),
  );
  ctx.remember({ mode: 'full' });
}
