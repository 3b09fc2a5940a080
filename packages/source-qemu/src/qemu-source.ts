/**
 * The `qemu` source: a disk of a running QEMU, through its QMP socket, at one point in time (see
 * point-in-time.ts), read over NBD by @backy/source-nbd's export backup: full backups skip what
 * base:allocation reports as zero, incrementals read what the parent's dirty bitmap marks (after the
 * sample check against the parent), and verify reads the same point in time again.
 */
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import {
  type BackupContext,
  type BackupSource,
  BackyError,
  defineSource,
  type VerificationResult,
  type VerifyContext,
} from '@backy/core/source';
import { BASE_ALLOCATION } from '@backy/nbd-protocol';
import {
  type BackupRun,
  backupExport,
  dirtyBitmapContext,
  NbdClient,
  type SampleHooks,
  verifyExport,
} from '@backy/source-nbd';
import { type ParentFacts, planBitmap, revive } from './bitmaps.js';
import { resolveDrive } from './drive.js';
import { refuseConcurrentJobs, removeLeftovers } from './leftovers.js';
import { type QemuSourceOptions, qemuSourceOptions } from './options.js';
import { BITMAP_PREFIX, newOwner } from './owner.js';
import { EXPORT_NAME, PointInTime } from './point-in-time.js';
import { MIN_QEMU, olderThan, QmpClient, versionText } from './qmp.js';

export interface QemuSourceHooks extends SampleHooks {
  /** The qemu-img executable (default `qemu-img`). */
  qemuImg?: string;
  /** Called right before the point in time is taken, with the guest frozen if it is (tests). */
  beforePointInTime?: () => void | Promise<void>;
  /** Called right after the point in time is taken (tests write into the disk then). */
  onPointInTime?: () => void | Promise<void>;
}

type FinishContext = Parameters<NonNullable<BackupSource['finish']>>[0];

interface Run {
  qmp: QmpClient;
  pit: PointInTime | null;
  backup: BackupRun | null;
}

/** Connects to QMP and refuses a QEMU older than backy needs. */
export async function connectQmp(path: string, signal?: AbortSignal): Promise<QmpClient> {
  const qmp = await QmpClient.connect(path, { signal });
  if (olderThan(qmp.version, MIN_QEMU)) {
    qmp.close();
    throw new BackyError(
      'SOURCE_UNAVAILABLE',
      `QEMU ${versionText(qmp.version)} at ${path} is too old: backy needs block-export-add with dirty bitmaps (QEMU >= ${versionText(MIN_QEMU)})`,
    );
  }
  return qmp;
}

interface Env {
  options: QemuSourceOptions;
  hooks: QemuSourceHooks;
  qmpPath: string;
  runDirParent: string;
  runs: Map<string, Run>;
}

const freezeOptions = (options: QemuSourceOptions, logger: BackupContext['logger']) =>
  options['guest-agent'] == null
    ? null
    : {
        socket: resolve(options['guest-agent']),
        mountpoints: options['freeze-mountpoints'],
        timeoutMs: options['freeze-timeout'] * 1000,
        logger,
      };

/** One backup: the point in time, then the export read into the revision (the run stays for verify). */
async function backupDrive(ctx: BackupContext, env: Env): Promise<void> {
  const { options, hooks, qmpPath, runDirParent, runs } = env;
  ctx.signal.throwIfAborted();
  const log = ctx.logger;
  const qmp = await connectQmp(qmpPath, ctx.signal);
  const run: Run = { qmp, pit: null, backup: null };
  runs.set(ctx.revision.uuid, run);
  await removeLeftovers(qmp, qmpPath, runDirParent, log);
  const drive = await resolveDrive(qmp, options.drive);
  await refuseConcurrentJobs(qmp, drive.nodeName, options.drive);
  const plan = planBitmap(
    (ctx.parent?.revision.source_info as ParentFacts | undefined) ?? null,
    { qmp: qmpPath, drive: options.drive },
    drive.bitmaps,
  );
  if (plan.fullReason != null && ctx.parent != null) log.warn(`${plan.fullReason}: full backup`);
  if (plan.revive.length > 0) {
    log.warn(
      { bitmap: plan.from, merged: plan.revive },
      `bitmap ${plan.from} was left disabled by a backup that did not finish: merged ${plan.revive.join(', ')} into it`,
    );
    await revive(qmp, drive.nodeName, plan.from!, plan.revive);
  }
  const bitmap = `${BITMAP_PREFIX}${ctx.revision.uuid}`;
  ctx.signal.throwIfAborted();
  run.pit = await PointInTime.take({
    qmp,
    qmpPath,
    drive,
    owner: newOwner(),
    runDirParent,
    from: plan.from,
    bitmap,
    freeze: freezeOptions(options, log),
    qemuImg: hooks.qemuImg,
    logger: log,
    beforePointInTime: hooks.beforePointInTime,
    onPointInTime: hooks.onPointInTime,
  });
  const { freeze: outcome } = run.pit;
  ctx.remember({
    qmp: qmpPath,
    drive: options.drive,
    node: drive.nodeName,
    bitmap,
    snapshot_method: outcome.method,
    ...(outcome.reason != null ? { snapshot_direct_reason: outcome.reason } : {}),
    ...(outcome.frozenMs != null ? { frozen_ms: outcome.frozenMs } : {}),
  });
  const client = await NbdClient.connect(
    { transport: 'unix', socket: run.pit.socket, exportName: EXPORT_NAME },
    {
      metaContexts: [BASE_ALLOCATION, ...(plan.from != null ? [dirtyBitmapContext(plan.from)] : [])],
      signal: ctx.signal,
    },
  );
  try {
    run.backup = await backupExport(ctx, client, { bitmap: plan.from, fullReason: plan.fullReason }, hooks);
  } finally {
    await client.close();
  }
}

export function createQemuSource(options: QemuSourceOptions, hooks: QemuSourceHooks = {}): BackupSource {
  const qmpPath = resolve(options.qmp);
  const runDirParent = resolve(options['fleecing-dir'] ?? tmpdir());
  const runs = new Map<string, Run>();
  const env: Env = { options, hooks, qmpPath, runDirParent, runs };

  /** Ends the run in QEMU: undoes the point in time (rotating bitmaps as `success` says) and disconnects. */
  async function end(uuid: string, success: boolean): Promise<void> {
    const run = runs.get(uuid);
    runs.delete(uuid);
    if (run == null) return;
    try {
      await run.pit?.close(success);
    } finally {
      run.qmp.close();
    }
  }

  return {
    async backup(ctx) {
      try {
        await backupDrive(ctx, env);
      } catch (error) {
        await end(ctx.revision.uuid, false).catch((cleanup: Error) =>
          ctx.logger.warn({ err: cleanup }, cleanup.message),
        );
        throw error;
      }
    },

    async verify(ctx: VerifyContext): Promise<VerificationResult> {
      const run = runs.get(ctx.revision.uuid);
      // Only the point in time the backup read can verify it: the live disk has moved on.
      if (run?.pit == null)
        return {
          method: 'none',
          chunks_checked: 0,
          chunks_total: ctx.reader.chunkCount,
          ok: true,
          mismatches: [],
        };
      const client = await NbdClient.connect(
        { transport: 'unix', socket: run.pit.socket, exportName: EXPORT_NAME },
        { signal: ctx.signal },
      );
      try {
        return await verifyExport(ctx, client, run.backup, hooks);
      } finally {
        await client.close();
      }
    },

    async finish({ revision, success }: FinishContext) {
      await end(revision.uuid, success);
    },
  };
}

export const qemuSource = defineSource<QemuSourceOptions>({
  type: 'qemu',
  optionsSchema: qemuSourceOptions,
  create: (options) => createQemuSource(options),
  describe: (options) => `${options.drive} of ${options.qmp}`,
  paths: ['qmp', 'guest-agent', 'fleecing-dir'],
  async checkInit(options) {
    try {
      const qmp = await connectQmp(resolve(options.qmp));
      try {
        await resolveDrive(qmp, options.drive);
      } finally {
        qmp.close();
      }
      return [];
    } catch (error) {
      return [(error as Error).message];
    }
  },
});
