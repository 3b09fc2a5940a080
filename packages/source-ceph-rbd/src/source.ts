import {
  type BackupSource,
  DEFAULT_SAMPLE_SHARE,
  type SourceEnvironment,
  sampleIndexes,
} from '@backy/core/source';
import { type BackupSetup, backupImage } from './backup.js';
import { imageSpec, Rbd } from './rbd.js';
import type { RbdSourceOptions } from './rbd-options.js';
import { defaultMakeSnapshot, type MakeSnapshotArgs, SnapshotLifecycle } from './snapshots.js';
import { type VerifySetup, verifyAgainstSnapshot } from './verify.js';

export type { RbdSourceOptions } from './rbd-options.js';
export { type MakeSnapshotArgs, SNAPSHOT_PREFIX } from './snapshots.js';

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

// Re-exported: the Ceph tests pin down the sample's properties here.
export { sampleIndexes };

/**
 * The Ceph RBD source: snapshots the image, applies `rbd export-diff` against the parent's snapshot to the
 * parent's chunks (or reads the whole snapshot with `rbd export`), verifies a sample of chunks through
 * qemu-img or `rbd export`, and removes older `backy-*` snapshots afterwards. The parts: backup.ts (the
 * backup path), verify.ts (the sample check), snapshots.ts (which snapshots exist and when they go).
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
  const rbd = new Rbd({
    conf: options.conf,
    id: options.id,
    keyring: options.keyring,
    binary: hooks.rbdBinary,
    logger: env.logger,
  });
  const target = { rbd, pool, image, spec: imageSpec(pool, image) };
  const snapshots = new SnapshotLifecycle(target, env.logger);
  const backupSetup: BackupSetup = {
    target,
    snapshots,
    makeSnapshot: hooks.makeSnapshot ?? defaultMakeSnapshot,
    fullAlways: options['full-always'],
  };
  const verifySetup: VerifySetup = {
    target,
    fraction: hooks.verifyFraction ?? DEFAULT_SAMPLE_SHARE,
    reader: hooks.verifyReader ?? 'auto',
    qemuImgBinary: hooks.qemuImgBinary,
  };

  return {
    rbd,
    settled: () => snapshots.settled(),
    backup: (ctx) => backupImage(backupSetup, ctx),
    // The snapshot is looked up when the verify runs, as a rejection like the rest, not a throw.
    verify: async (ctx) => verifyAgainstSnapshot(verifySetup, ctx, snapshots.snapshotFor(ctx.revision.uuid)),
    finish: (ctx) => snapshots.finish(ctx),
  };
}
