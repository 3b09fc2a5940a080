import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { STORE_STATS_FILE } from './format/archive-files.js';
import { writeFileAtomic } from './fs-util.js';

/**
 * What a chunk store held when `purge` last went through all of it: purge lists every chunk and reads
 * every map anyway, so these cost nothing extra there, and reading them (for metrics) never walks the
 * store. Kept in the archive directory purge ran in (STORE_STATS_FILE), so every backend has them.
 */
export interface StoreStats {
  /** The store (`ChunkStore.root`: a directory, or the remote store's address). */
  store: string;
  /** Chunk files in the store, and their bytes (as stored: compressed, encrypted). */
  chunks: number;
  bytes: number;
  /**
   * Bytes of the images the revisions of all archives using the store hold in non-zero chunks, each
   * revision (by ID) once: the data before dedup and compression. `referenced_bytes / bytes` is the
   * store's dedup (and compression) ratio.
   */
  referenced_bytes: number;
  /** Revisions (distinct IDs) and archives whose maps purge read. */
  revisions: number;
  archives: number;
  /** When purge finished (ISO). */
  updated: string;
}

const FORMAT = 1;

/** Records `stats` in the archive directory `dir`, atomically. */
export async function writeStoreStats(dir: string, stats: StoreStats): Promise<void> {
  await writeFileAtomic(join(dir, STORE_STATS_FILE), `${JSON.stringify({ format: FORMAT, ...stats })}\n`);
}

const COUNTS = ['chunks', 'bytes', 'referenced_bytes', 'revisions', 'archives'] as const;

/**
 * The store stats recorded in archive directory `dir`, or null when there are none (no purge ran there
 * yet) or they cannot be read: they are only shown, so an odd file means "not known" rather than an error.
 * Synchronous: a few hundred bytes, read by the scheduler with the archive's revisions.
 */
export function readStoreStats(dir: string): StoreStats | null {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(readFileSync(join(dir, STORE_STATS_FILE), 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
  if (data == null || data.format !== FORMAT || typeof data.store !== 'string') return null;
  if (typeof data.updated !== 'string' || !Number.isFinite(Date.parse(data.updated))) return null;
  for (const key of COUNTS)
    if (typeof data[key] !== 'number' || !Number.isFinite(data[key]) || (data[key] as number) < 0)
      return null;
  const n = (key: (typeof COUNTS)[number]) => data[key] as number;
  return {
    store: data.store,
    chunks: n('chunks'),
    bytes: n('bytes'),
    referenced_bytes: n('referenced_bytes'),
    revisions: n('revisions'),
    archives: n('archives'),
    updated: data.updated,
  };
}
