// The parent a new backup builds upon (readers are each layout's, see layout.ts).
import type { Logger } from 'pino';
import type { Revision } from '../revision.js';
import { CHUNK_HASH } from '../store/chunk-hash.js';
import type { ChunkMap } from '../store/chunk-map.js';
import { layoutFor, layoutOf } from './layouts.js';
import { loadMap } from './maps.js';
import type { ArchiveParts } from './paths.js';

/**
 * The revision a new backup builds upon, newest first among `candidates` (complete revisions, oldest
 * first): one in the configured layout whose map loads, that passed its own verification, and whose
 * chunks are all in the store. Null means a full backup. Each revision passed over is logged.
 */
export async function usableParent(
  archive: ArchiveParts,
  candidates: readonly Revision[],
  logger?: Logger,
): Promise<{ revision: Revision; map: ChunkMap } | null> {
  const { config, store } = archive;
  const layout = layoutFor(config.layout);
  for (const rev of [...candidates].reverse()) {
    if (rev.trust === 'distrusted') return null; // the caller rewrites everything after distrust
    if (layoutOf(rev) !== layout) return null;
    let map: ChunkMap;
    try {
      map = await loadMap(archive.path, rev);
    } catch (error) {
      logger?.warn(
        { parent: rev.uuid, err: error },
        'the chunk map of a revision is damaged: not building upon it',
      );
      continue;
    }
    // A revision whose chunks are named by an older hash (or not by the store's keyed hash) is not
    // built upon: the next one is full.
    if (map.algorithm !== (store.naming?.algorithm ?? CHUNK_HASH)) return null;
    if (map.size !== rev.size) {
      logger?.warn(
        { parent: rev.uuid },
        'the chunk map of a revision does not match its size: not building upon it',
      );
      continue;
    }
    if (layout.chunkStore) {
      const missing = await store.missing(map.uniqueHashes());
      if (missing.length > 0) {
        logger?.warn(
          { parent: rev.uuid, missing: missing.length, first: missing.slice(0, 5) },
          'chunks of the parent revision are missing (or were found damaged): full backup, so they are written anew',
        );
        return null;
      }
    }
    return { revision: rev, map };
  }
  return null;
}
