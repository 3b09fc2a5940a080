// Peak RSS of each long backy operation on one image: what `pnpm bench:memory` tabulates over image
// sizes and `pnpm bench:peers` prints as its 16 GiB line. Memory, unlike time, is stable run to run.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { changeBlocks, writeSparseImage, writeVmImage } from '@backy/core/testing/helpers';
import { MiB, timedWithRss } from './measure.js';

export const OPERATIONS = ['backup', 'incremental', 'restore', 'verify', 'copy'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** The benchmarks' VM-like image (40% random, 30% text, 30% zeros), or `writeSparseImage`'s. */
export async function writeImage(path: string, size: number, kind: 'vm' | 'sparse'): Promise<void> {
  return kind === 'sparse' ? writeSparseImage(path, size) : writeVmImage(path, size);
}

/**
 * Runs backup, an incremental after 1% changed, restore, verify and copy to a second archive with the
 * `backy` binary `bin` in `dir`; returns each one's peak RSS in bytes (0 where GNU time is missing).
 */
export async function peakRss(
  bin: string,
  dir: string,
  image: string,
  size: number,
  operations: readonly Operation[] = OPERATIONS,
): Promise<Record<Operation, number>> {
  const archive = join(dir, 'archive');
  const target = join(dir, 'copy');
  const restored = join(dir, 'restored.img');
  const rssFile = join(dir, 'rss');
  const out = {} as Record<Operation, number>;
  await rm(archive, { recursive: true, force: true });
  await rm(target, { recursive: true, force: true });
  // No `-q`: its output is not a terminal, so it shows no progress anyway, and a baseline from before
  // `-q` (19b5388) refused it.
  const backy = (...args: string[]) => timedWithRss(process.execPath, [bin, ...args], rssFile);
  await backy('-b', archive, 'init', 'file', image);
  const measure = async (op: Operation, ...args: string[]) => {
    if (!operations.includes(op)) return;
    out[op] = (await backy(...args)).rss;
  };
  out.backup = (await backy('-b', archive, 'backup', 'daily')).rss;
  if (operations.includes('incremental')) {
    await changeBlocks(image, size, Math.max(1, Math.round(size / (4 * MiB) / 100)));
    await measure('incremental', '-b', archive, 'backup', 'daily');
  }
  await measure('restore', '-b', archive, 'restore', '-r', 'last', restored);
  await rm(restored, { force: true });
  await measure('verify', '-b', archive, 'verify', '-r', 'all');
  await measure('copy', '-b', archive, 'copy', '--init-from-source', '-r', 'all', target);
  await rm(archive, { recursive: true, force: true });
  await rm(target, { recursive: true, force: true });
  return out;
}
