import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { BackyError, ioError } from './errors.js';
import { ChunkMap } from './store/chunk-map.js';
import type { ChunkStore } from './store/chunk-store.js';

export interface PurgeResult {
  chunksDeleted: number;
  bytesFreed: number;
  chunksKept: number;
  archives: number;
}

export interface PurgeOptions {
  logger: Logger;
  /** Seconds to wait for running backups, restores and verifications to finish (default 0: fail at once). */
  waitSeconds?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Deletes chunks that no revision of any archive using the store references. It holds the store's
 * purge lock exclusively, which every backup, restore and verify holds shared, so a chunk a running
 * backup has written (or relies on) is never deleted under it. Maps of interrupted backups count as
 * references too; they go when that archive's next backup cleans up.
 */
export async function purgeStore(store: ChunkStore, options: PurgeOptions): Promise<PurgeResult> {
  const lock = await store.lock('exclusive', options.waitSeconds ?? 0);
  try {
    const referenced = new Set<string>();
    const archives = await store.registeredArchives();
    let live = 0;
    for (const dir of archives) {
      const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return null;
        throw ioError(error, `reading archive ${dir}`);
      });
      if (names == null) {
        options.logger.warn({ archive: dir }, 'registered archive no longer exists; unregistering it');
        await store.unregister(dir);
        continue;
      }
      live++;
      for (const name of names) {
        if (!name.endsWith('.map') || name.startsWith('.')) continue;
        let map: ChunkMap;
        try {
          map = await ChunkMap.load(join(dir, name));
        } catch (error) {
          throw new BackyError(
            'REVISION_INVALID',
            `purge stopped, nothing deleted: ${(error as Error).message}`,
            { cause: error },
          );
        }
        for (const hash of map.uniqueHashes()) referenced.add(hash);
      }
    }
    const result: PurgeResult = { chunksDeleted: 0, bytesFreed: 0, chunksKept: 0, archives: live };
    for await (const entry of store.entries()) {
      options.signal?.throwIfAborted();
      if (entry.hash != null && referenced.has(entry.hash)) {
        result.chunksKept++;
        continue;
      }
      await rm(entry.path, { force: true });
      if (entry.hash != null) {
        result.chunksDeleted++;
        result.bytesFreed += entry.bytes;
      }
      options.onProgress?.(result.chunksDeleted + result.chunksKept, referenced.size);
    }
    options.logger.info({ ...result }, 'purge completed');
    return result;
  } finally {
    await lock.release();
  }
}

/** Bytes used by the store's chunk files. */
export async function storeUsage(store: ChunkStore): Promise<{ chunks: number; bytes: number }> {
  let chunks = 0;
  let bytes = 0;
  for await (const entry of store.entries()) {
    if (entry.hash == null) continue;
    chunks++;
    bytes += entry.bytes;
  }
  return { chunks, bytes };
}
