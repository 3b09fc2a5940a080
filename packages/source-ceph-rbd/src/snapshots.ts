import type { Logger } from 'pino';
import { type Rbd, RbdError, type RbdSnapshot } from './rbd.js';

/** Snapshots backy makes are named `backy-<revision id>`; other snapshots are never touched. */
export const SNAPSHOT_PREFIX = 'backy-';

/** The snapshot the backup of revision `uuid` makes and reads. */
export const snapshotOf = (uuid: string): string => `${SNAPSHOT_PREFIX}${uuid}`;

export interface MakeSnapshotArgs {
  rbd: Rbd;
  pool: string;
  image: string;
  snapshot: string;
  /** The backup's logger, bound to `image` and `snapshot` already (binding them again repeats the keys). */
  logger: Logger;
  signal: AbortSignal;
}

export const defaultMakeSnapshot = async ({ rbd, pool, image, snapshot, signal }: MakeSnapshotArgs) =>
  rbd.snapCreate(pool, image, snapshot, signal);

/** One image, the client that reaches it and its `pool/image` spec for logs: what the source's parts share. */
export interface RbdImage {
  rbd: Rbd;
  pool: string;
  image: string;
  spec: string;
}

/** A backup's snapshot, from before it is made until the backup is finished. */
export interface SnapshotRun {
  snapshot: string;
  /** Older snapshots whose removal started while the backup read the image (not tried again in finish). */
  tried: Set<string>;
}

/**
 * The life of backy's snapshots of one image. Each backup makes one (registered before it is made, so
 * that a failed backup removes it); the snapshots older than the diff's base are removed while the
 * backup reads the image, the base and any made since after the commit. Removing an older snapshot is
 * not on a backup's critical path: it runs in the background, and one that fails is logged and tried
 * again by the next backup.
 */
export class SnapshotLifecycle {
  private readonly runs = new Map<string, SnapshotRun>();
  private readonly background = new Set<Promise<void>>();

  /** `logger`: the source's, for removals that fail outside any backup. */
  constructor(
    private readonly target: RbdImage,
    private readonly logger: Logger,
  ) {}

  /** Registers the backup of revision `uuid`, before its snapshot is made. */
  begin(uuid: string): SnapshotRun {
    const run: SnapshotRun = { snapshot: snapshotOf(uuid), tried: new Set() };
    this.runs.set(uuid, run);
    return run;
  }

  /** The snapshot the backup of revision `uuid` made (also when another process made it). */
  snapshotFor(uuid: string): string {
    return this.runs.get(uuid)?.snapshot ?? snapshotOf(uuid);
  }

  /**
   * Starts removing the backy snapshots in `snapshots` other than the run's own and `base` (the diff's):
   * they are of no use to this backup or, should it fail, the next.
   */
  removeStale(run: SnapshotRun, snapshots: RbdSnapshot[], base: string | null, logger: Logger): void {
    const stale = snapshots
      .map((s) => s.name)
      .filter((name) => name.startsWith(SNAPSHOT_PREFIX) && name !== run.snapshot && name !== base);
    for (const name of stale) run.tried.add(name);
    // Their lines name the snapshot they remove, not this backup's.
    const log = logger.child({ image: this.target.spec });
    if (stale.length > 0) this.inBackground(() => this.remove(stale, 'removed an older backy snapshot', log));
  }

  /**
   * Ends the backup of `revision`: a failed one's snapshot is removed at once; after a successful one the
   * older snapshots not tried yet (the parent's, the diff's base, and any made since the backup began)
   * are removed in the background, without holding the backup up.
   */
  async finish({
    revision,
    success,
    logger,
  }: {
    revision: { uuid: string };
    success: boolean;
    logger: Logger;
  }): Promise<void> {
    const run = this.runs.get(revision.uuid);
    this.runs.delete(revision.uuid);
    if (run == null) return;
    const log = logger.child({ image: this.target.spec });
    if (!success) {
      await this.removeFailed(run, log);
      return;
    }
    const { rbd, pool, image } = this.target;
    this.inBackground(async () => {
      const snapshots = await rbd.snapList(pool, image);
      const older = snapshots
        .map((s) => s.name)
        .filter((name) => name.startsWith(SNAPSHOT_PREFIX) && name !== run.snapshot && !run.tried.has(name));
      await this.remove(older, 'removed an older backy snapshot', log);
    });
  }

  /** Resolves once the snapshot removals still running in the background have ended. */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.all(this.background);
  }

  private async removeFailed(run: SnapshotRun, log: Logger): Promise<void> {
    const { rbd, pool, image } = this.target;
    let snapshots: RbdSnapshot[];
    try {
      snapshots = await rbd.snapList(pool, image);
    } catch (error) {
      // A backup that failed because the image is missing has no snapshot to clean up.
      if (error instanceof RbdError && error.notFound) return;
      throw error;
    }
    if (snapshots.some((s) => s.name === run.snapshot))
      await this.remove([run.snapshot], 'removed the snapshot of the failed backup', log);
  }

  private inBackground(work: () => Promise<void>): void {
    const running: Promise<void> = work()
      .catch((error) =>
        this.logger.warn({ err: error, image: this.target.spec }, 'removing older snapshots failed'),
      )
      .finally(() => this.background.delete(running));
    this.background.add(running);
  }

  /** Removes snapshots one after the other; a failure is logged (the next backup tries again). */
  private async remove(names: string[], why: string, log: Logger): Promise<void> {
    const { rbd, pool, image } = this.target;
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
}
