/**
 * The dirty bitmaps of the qemu source. Backup N adds `backy-N` in the same QMP transaction that takes
 * its point in time, and disables `backy-M`, the bitmap the parent revision M recorded: `backy-M` then
 * holds exactly the writes between M and N. Only after revision N is committed is `backy-M` removed;
 * a failed backup merges `backy-N` back into `backy-M` and enables it again. A run killed in between
 * leaves `backy-M` disabled and `backy-N` recording: the next run merges them (a superset of the
 * changes since M, never less). Bitmaps without the `backy-` prefix are never touched.
 */
import type { Logger } from 'pino';
import type { DirtyBitmap } from './drive.js';
import { BITMAP_PREFIX } from './owner.js';
import type { QmpClient } from './qmp.js';

export interface BitmapPlan {
  /** The bitmap to read the incremental from, or null: a full backup. */
  from: string | null;
  /** Why a full backup (logged, and passed on to the export backup). */
  fullReason?: string;
  /** Bitmaps to merge into `from` (and `from` enabled again) before the point in time. */
  revive: string[];
}

export interface ParentFacts {
  qmp?: unknown;
  drive?: unknown;
  bitmap?: unknown;
}

/**
 * Which bitmap can make an incremental: the parent's, if it was made from this QEMU and drive and the
 * bitmap is there and consistent; when a killed run left it disabled, with the recording backy
 * bitmaps merged into it. Pure.
 */
export function planBitmap(
  parent: ParentFacts | null,
  where: { qmp: string; drive: string },
  bitmaps: DirtyBitmap[],
): BitmapPlan {
  const full = (fullReason: string): BitmapPlan => ({ from: null, fullReason, revive: [] });
  if (parent == null) return full('no trusted parent revision');
  if (parent.qmp !== where.qmp || parent.drive !== where.drive || typeof parent.bitmap !== 'string')
    return full('the parent revision was not made from this QEMU drive');
  const name = parent.bitmap;
  const bitmap = bitmaps.find((b) => b.name === name);
  if (bitmap == null)
    return full(`bitmap ${name} the parent revision recorded is gone (QEMU restarted, or it was removed)`);
  if (bitmap.inconsistent) return full(`bitmap ${name} is inconsistent (QEMU stopped without saving it)`);
  if (bitmap.busy) return full(`bitmap ${name} is in use by another operation`);
  if (bitmap.recording) return { from: name, revive: [] };
  // Disabled: a backup disabled it in the transaction that added its own, recording one, and did not
  // get to merge that back. Those took over at the same instant, so together they miss nothing.
  const heirs = bitmaps.filter(
    (b) => b.name !== name && b.name.startsWith(BITMAP_PREFIX) && b.recording && !b.inconsistent && !b.busy,
  );
  if (heirs.length === 0) return full(`bitmap ${name} is disabled and no backy bitmap took over from it`);
  return { from: name, revive: heirs.map((b) => b.name) };
}

/** Merges `others` into `target` and enables it again, in one transaction (no write falls between). */
export async function revive(qmp: QmpClient, node: string, target: string, others: string[]): Promise<void> {
  await qmp.execute('transaction', {
    actions: [
      { type: 'block-dirty-bitmap-enable', data: { node, name: target } },
      ...(others.length > 0
        ? [{ type: 'block-dirty-bitmap-merge', data: { node, target, bitmaps: others } }]
        : []),
    ],
  });
}

/** Removes the backy bitmaps of `node` except `keep`; failures are warnings (the next run retries). */
export async function removeBitmaps(
  qmp: QmpClient,
  node: string,
  names: string[],
  log: Logger,
  why: string,
): Promise<void> {
  for (const name of names) {
    if (!name.startsWith(BITMAP_PREFIX)) continue;
    try {
      await qmp.execute('block-dirty-bitmap-remove', { node, name });
      log.info({ bitmap: name }, why);
    } catch (error) {
      log.warn({ bitmap: name, err: error }, `could not remove bitmap ${name}: ${(error as Error).message}`);
    }
  }
}
