import type { Logger } from 'pino';
import { isBackyError } from './errors.js';
import { purgeStore } from './purge.js';
import type { ChunkStore, StoreEntry } from './store/contract.js';

/**
 * After a failed backup: deletes the chunks it wrote anew (`fresh`) that no revision references, so a
 * backup that failed on a full disk does not leave the disk full for its retry (issue 12). It is a
 * purge limited to those chunks, with purge's guarantees: it holds the store's exclusive lock, so no
 * other backup (which may have found one of these chunks already there and relied on it) or reader is
 * running, and every map of every archive using the store counts. When the store is in use it gives
 * up at once; the next purge frees the chunks. Never throws: the backup's own error is what matters.
 */
export async function removeLeftoverChunks(
  store: ChunkStore,
  fresh: ReadonlySet<string>,
  logger: Logger,
  archiveDir: string,
): Promise<void> {
  if (fresh.size === 0) return;
  try {
    const result = await purgeStore(store, {
      logger,
      waitSeconds: 0,
      candidates: entriesOf(store, fresh),
      archiveDir,
    });
    logger.info(
      { chunks: result.chunksDeleted, bytes: result.bytesFreed },
      'removed the chunks the failed backup wrote',
    );
  } catch (error) {
    logger[isBackyError(error, 'LOCKED') ? 'info' : 'warn'](
      { err: error, chunks: fresh.size },
      'the chunks the failed backup wrote stay until the next purge',
    );
  }
}

async function* entriesOf(store: ChunkStore, hashes: ReadonlySet<string>): AsyncIterable<StoreEntry> {
  for (const hash of hashes) {
    const entry = await store.entryOf(hash);
    if (entry != null) yield entry;
  }
}
