import { type Archive, layoutOf } from './archive/index.js';
import type { Revision } from './revision.js';

/**
 * The data `revisions` hold together, as `backy status` estimates it: every distinct non-zero chunk
 * once, at its length before compression. Summing each revision's `bytes_written` (what backy 2.x
 * showed) says 0 B for revisions that reuse all their chunks, and goes on counting chunks that
 * `forget` made unreferenced. A revision without a readable map (backy 2.x's, a damaged one) counts
 * with its size.
 */
export async function heldBytes(archive: Archive, revisions: readonly Revision[]): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  for (const rev of revisions) {
    const map = layoutOf(rev).mapFile ? await archive.loadMap(rev).catch(() => null) : null;
    if (map == null) {
      total += rev.size;
      continue;
    }
    for (let i = 0; i < map.chunkCount; i++) {
      const hash = map.get(i);
      if (hash == null) continue;
      // The images layout shares unchanged blocks by reflink, so distinct content is its estimate too.
      const key = `${map.algorithm}:${hash}`;
      if (seen.has(key)) continue;
      seen.add(key);
      total += map.chunkLength(i);
    }
  }
  return total;
}
