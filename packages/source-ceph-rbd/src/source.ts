import {
  type BackupContext,
  type BackupSource,
  BackyError,
  DEFAULT_SAMPLE_SHARE,
  isBackyError,
  type RevisionReader,
  type SourceEnvironment,
  sampleIndexes,
  type VerificationResult,
  type VerifyContext,
} from '@backy/core/source';
import type { Logger } from 'pino';
import { applyRawImage, applyRbdDiff } from './apply-diff.js';
import { parseRbdDiff } from './diff-stream.js';
import { imageSpec, Rbd, RbdError, type RbdSnapshot } from './rbd.js';
import type { RbdSourceOptions } from './rbd-options.js';
import { QemuImgChunkReader, qemuImgSupportsRbd } from './snapshot-reader.js';

/** Snapshots backy makes are named `backy-<revision id>`; other snapshots are never touched. */
export const SNAPSHOT_PREFIX = 'backy-';

export type { RbdSourceOptions } from './rbd-options.js';

export interface MakeSnapshotArgs {
  rbd: Rbd;
  pool: string;
  image: string;
  snapshot: string;
  /** The backup's logger, bound to `image` and `snapshot` already (binding them again repeats the keys). */
  logger: Logger;
  signal: AbortSignal;
}

export interface RbdSourceHooks {
  /** Makes the snapshot a backup reads (default: `rbd snap create`). */
  makeSnapshot?(args: MakeSnapshotArgs): Promise<void>;
  /** The rbd executable (default `rbd`). */
  rbdBinary?: string;
  /** The qemu-img executable used to read sampled chunks for verification (default `qemu-img`). */
  qemuImgBinary?: string;
  /** Share of the chunks compared with the snapshot after a backup (default 0.01; at least one chunk). */
  verifyFraction?: number;
  /**
   * How verification reads the snapshot: `qemu-img` reads each sampled chunk by offset, `export` reads
   * `rbd export` up to the last sampled chunk. `auto` (default) prefers qemu-img when it has rbd support
   * and the sample is small.
   */
  verifyReader?: 'auto' | 'qemu-img' | 'export';
}

interface RunState {
  snapshot: string;
  /** Older snapshots whose removal started while the backup read the image (not tried again in finish). */
  tried: Set<string>;
}

const defaultMakeSnapshot = async ({ rbd, pool, image, snapshot, signal }: MakeSnapshotArgs) =>
  rbd.snapCreate(pool, image, snapshot, signal);

/** qemu-img processes reading sampled chunks at once. */
const QEMU_CONCURRENCY = 3;

// Re-exported: the Ceph tests pin down the sample's properties here.
export { sampleIndexes };

/**
 * The Ceph RBD source: snapshots the image, applies `rbd export-diff` against the parent's snapshot to the
 * parent's chunks (or reads the whole snapshot with `rbd export`), verifies a sample of chunks through
 * qemu-img or `rbd export`, and removes older `backy-*` snapshots afterwards.
 */
export function createRbdSource(
  options: RbdSourceOptions,
  env: SourceEnvironment,
  hooks: RbdSourceHooks = {},
): BackupSource &
  Required<Pick<BackupSource, 'verify' | 'finish'>> & {
    rbd: Rbd;
    /** Resolves once the snapshot removals still running in the background have ended. */
    settled(): Promise<void>;
  } {
  const { pool, image } = options;
  const spec = imageSpec(pool, image);
  const rbd = new Rbd({
    conf: options.conf,
    id: options.id,
    keyring: options.keyring,
    binary: hooks.rbdBinary,
    logger: env.logger,
  });
  const makeSnapshot = hooks.makeSnapshot ?? defaultMakeSnapshot;
  const verifyFraction = hooks.verifyFraction ?? DEFAULT_SAMPLE_SHARE;
  const runs = new Map<string, RunState>();
  // Removing an older snapshot is not on a backup's critical path: it runs beside the export and after
  // the commit, and one that fails is logged and tried again by the next backup.
  const background = new Set<Promise<void>>();
  const inBackground = (work: () => Promise<void>) => {
    const running: Promise<void> = work()
      .catch((error) => env.logger.warn({ err: error, image: spec }, 'removing older snapshots failed'))
      .finally(() => background.delete(running));
    background.add(running);
  };

  /** Removes snapshots one after the other; a failure is logged (the next backup tries again). */
  async function removeSnapshots(names: string[], why: string, log: Logger): Promise<void> {
    for (const snapshot of names) {
      try {
        await rbd.snapRemove(pool, image, snapshot);
        log.info({ snapshot }, why);
      } catch (error) {
        if (error instanceof RbdError && error.notFound) {
          log.debug({ snapshot }, `snapshot ${snapshot} was already gone`);
        } else if (error instanceof RbdError && error.protectedSnapshot) {
          log.warn(
            { snapshot },
            `snapshot ${snapshot} is protected and was left in place; unprotect and remove it by hand`,
          );
        } else {
          log.warn(
            { snapshot, err: error },
            `could not remove snapshot ${snapshot}: ${(error as Error).message}`,
          );
        }
      }
    }
  }

  /** Decides whether the backup can be a diff against the parent's snapshot, and says why not. */
  async function diffBase(
    ctx: BackupContext,
    snapshots: RbdSnapshot[],
  ): Promise<{ from: string } | { from: null; reason: string }> {
    if (options['full-always']) return { from: null, reason: 'full-always is set' };
    if (ctx.parent == null) return { from: null, reason: 'no trusted parent revision' };
    const parent = ctx.parent.revision;
    const info = parent.source_info ?? {};
    if ((info.pool != null && info.pool !== pool) || (info.image != null && info.image !== image)) {
      return {
        from: null,
        reason: `the parent revision was made from ${String(info.pool)}/${String(info.image)}`,
      };
    }
    const from = typeof info.snapshot === 'string' ? info.snapshot : `${SNAPSHOT_PREFIX}${parent.uuid}`;
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

  async function backup(ctx: BackupContext): Promise<void> {
    const { signal, writer } = ctx;
    const snapshot = `${SNAPSHOT_PREFIX}${ctx.revision.uuid}`;
    const log = ctx.logger.child({ image: spec, snapshot });
    signal.throwIfAborted();
    const run: RunState = { snapshot, tried: new Set() };
    runs.set(ctx.revision.uuid, run);
    await makeSnapshot({ rbd, pool, image, snapshot, logger: log, signal });
    ctx.remember({ pool, image, snapshot });
    const snapshots = await rbd.snapList(pool, image, signal);
    const snap = snapshots.find((s) => s.name === snapshot);
    if (snap == null)
      throw new BackyError(
        'SOURCE_FAILED',
        `snapshot ${imageSpec(pool, image, snapshot)} does not exist after it was made`,
      );
    const base = await diffBase(ctx, snapshots);
    // Snapshots older than the diff's base are of no use to this backup or, should it fail, the next.
    const stale = snapshots
      .map((s) => s.name)
      .filter((name) => name.startsWith(SNAPSHOT_PREFIX) && name !== snapshot && name !== base.from);
    for (const name of stale) run.tried.add(name);
    // Their lines name the snapshot they remove, not this backup's (which `log` is bound to).
    const removalLog = ctx.logger.child({ image: spec });
    if (stale.length > 0)
      inBackground(() => removeSnapshots(stale, 'removed an older backy snapshot', removalLog));

    if (base.from != null) {
      const wholeObject = await rbd.supportsWholeObject();
      log.info({ from: base.from, wholeObject }, 'incremental backup with rbd export-diff');
      const result = await rbd.exportDiff(
        { pool, image, snapshot, fromSnapshot: base.from, wholeObject, signal },
        (stdout) =>
          applyRbdDiff(parseRbdDiff(stdout), {
            writer,
            base: ctx.parent!.reader,
            expectFrom: base.from,
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
      ctx.remember({ mode: 'diff', from_snapshot: base.from });
    } else {
      log.info({ reason: base.reason, size: snap.size }, 'full backup with rbd export');
      await rbd.export({ pool, image, snapshot, signal }, (stdout) =>
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
  }

  async function verify(ctx: VerifyContext): Promise<VerificationResult> {
    const { reader, signal } = ctx;
    const started = Date.now();
    const snapshot = runs.get(ctx.revision.uuid)?.snapshot ?? `${SNAPSHOT_PREFIX}${ctx.revision.uuid}`;
    const log = ctx.logger.child({ image: spec, snapshot });
    const total = reader.chunkCount;
    const info = await rbd.info(pool, image, snapshot, signal);
    if (info.size !== reader.size) {
      log.error(
        { snapshot_size: info.size, revision_size: reader.size },
        'snapshot size differs from the revision',
      );
      return { method: 'partial', chunks_checked: 0, chunks_total: total, ok: false, mismatches: [] };
    }
    if (total === 0) return { method: 'full', chunks_checked: 0, chunks_total: 0, ok: true, mismatches: [] };

    const wanted = Math.max(1, Math.ceil(total * Math.min(1, Math.max(0, verifyFraction))));
    const sample = sampleIndexes(total, wanted);
    const mismatches: number[] = [];
    let checked = 0;
    // Progress in bytes, as the contract says (not chunks: the bar would show `1 B / 1 B`).
    const sampleBytes = sample.reduce((sum, index) => sum + reader.chunkLength(index), 0);
    let checkedBytes = 0;
    const overBudget = () => checked > 0 && Date.now() - started > ctx.budgetMs;
    const check = async (index: number, data: Buffer) => {
      const ok = await ctx.checkChunk(index, data);
      if (!ok) mismatches.push(index);
      checked++;
      checkedBytes += reader.chunkLength(index);
      ctx.progress(checkedBytes, sampleBytes);
    };

    let pending = sample;
    let method = hooks.verifyReader ?? 'auto';
    if (method === 'auto') {
      const small = sample.length * 4 <= total;
      method = small && (await qemuImgSupportsRbd(hooks.qemuImgBinary)) ? 'qemu-img' : 'export';
    }
    if (method === 'qemu-img') {
      const chunks = new QemuImgChunkReader(
        { pool, image, snapshot, client: rbd.client },
        reader.chunkSize,
        hooks.qemuImgBinary,
      );
      // A few qemu-img processes at once: each spends most of its time connecting to the cluster.
      const done = new Set<number>();
      let failure: unknown = null;
      let next = 0;
      const work = async () => {
        while (failure == null && next < pending.length && !overBudget()) {
          const index = pending[next++]!;
          try {
            signal.throwIfAborted();
            await check(index, await chunks.read(index, reader.chunkLength(index), signal));
            done.add(index);
          } catch (error) {
            failure ??= error;
          }
        }
      };
      try {
        await Promise.all(Array.from({ length: Math.min(QEMU_CONCURRENCY, pending.length) }, work));
        pending = pending.filter((index) => !done.has(index));
        if (failure != null) {
          if (signal.aborted || isBackyError(failure, 'ABORTED')) throw failure;
          if (!isBackyError(failure, 'SOURCE_FAILED')) throw failure;
          log.warn(
            { err: failure },
            'reading chunks with qemu-img failed; reading them from rbd export instead',
          );
        }
      } finally {
        await chunks.close();
      }
    }
    if (pending.length > 0 && !overBudget()) {
      pending = await verifyFromExport(snapshot, reader, pending, check, overBudget, signal);
    }
    mismatches.sort((a, b) => a - b);
    const result: VerificationResult = {
      method: checked === total ? 'full' : 'partial',
      chunks_checked: checked,
      chunks_total: total,
      ok: mismatches.length === 0,
      mismatches,
    };
    log.info(
      {
        ...result,
        mismatches: mismatches.slice(0, 20),
        sampled: sample.length,
        seconds: (Date.now() - started) / 1000,
      },
      'verified against the snapshot',
    );
    return result;
  }

  /** Reads `rbd export` of the snapshot up to the last sampled chunk; returns the chunks left unchecked. */
  async function verifyFromExport(
    snapshot: string,
    reader: RevisionReader,
    indexes: number[],
    check: (index: number, data: Buffer) => Promise<void>,
    overBudget: () => boolean,
    signal: AbortSignal,
  ): Promise<number[]> {
    let next = 0;
    await rbd.export({ pool, image, snapshot, signal }, async (stdout) => {
      let offset = 0;
      let buffer: Buffer | null = null;
      let filled = 0;
      for await (const piece of stdout) {
        let at = 0;
        while (at < piece.length && next < indexes.length) {
          const index = indexes[next]!;
          const start = index * reader.chunkSize;
          const length = reader.chunkLength(index);
          const pos = offset + at;
          if (pos < start) {
            at += Math.min(start - pos, piece.length - at);
            continue;
          }
          buffer ??= Buffer.allocUnsafe(length);
          const n = Math.min(length - filled, piece.length - at);
          piece.copy(buffer, filled, at, at + n);
          filled += n;
          at += n;
          if (filled === length) {
            await check(index, buffer);
            buffer = null;
            filled = 0;
            next++;
            if (overBudget()) return;
          }
        }
        offset += piece.length;
        if (next >= indexes.length) return;
      }
      if (next < indexes.length)
        throw new BackyError(
          'SOURCE_FAILED',
          `rbd export ended at byte ${offset}, before chunk ${indexes[next]}`,
        );
    });
    return indexes.slice(next);
  }

  async function finish({
    revision,
    success,
    logger,
  }: {
    revision: { uuid: string };
    success: boolean;
    logger: Logger;
  }): Promise<void> {
    const run = runs.get(revision.uuid);
    runs.delete(revision.uuid);
    if (run == null) return;
    const log = logger.child({ image: spec });
    if (!success) {
      let snapshots: RbdSnapshot[];
      try {
        snapshots = await rbd.snapList(pool, image);
      } catch (error) {
        // A backup that failed because the image is missing has no snapshot to clean up.
        if (error instanceof RbdError && error.notFound) return;
        throw error;
      }
      if (snapshots.some((s) => s.name === run.snapshot))
        await removeSnapshots([run.snapshot], 'removed the snapshot of the failed backup', log);
      return;
    }
    // The parent's snapshot (the diff's base) and any made since the backup began: after the commit,
    // without holding the backup up.
    inBackground(async () => {
      const snapshots = await rbd.snapList(pool, image);
      const older = snapshots
        .map((s) => s.name)
        .filter((name) => name.startsWith(SNAPSHOT_PREFIX) && name !== run.snapshot && !run.tried.has(name));
      await removeSnapshots(older, 'removed an older backy snapshot', log);
    });
  }

  async function settled(): Promise<void> {
    while (background.size > 0) await Promise.all(background);
  }

  return {
    rbd,
    settled,
    backup,
    verify,
    finish,
  };
}
