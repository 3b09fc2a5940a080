import type { Logger } from 'pino';
import { type Archive, layoutOf } from './archive/index.js';
import { chunkBuffers } from './buffer-pool.js';
import { type BackyError, isBackyError } from './errors.js';
import type { Revision } from './revision.js';
import type { RevisionReader } from './revision-io.js';
import { forEachChunk } from './revision-stream.js';
import { RetentionChecker, type RetentionVerifyResult } from './verify-retention.js';

export interface DamagedChunk {
  index: number;
  offset: number;
  hash: string;
  reason: string;
}

export interface RevisionVerifyResult {
  uuid: string;
  ok: boolean;
  damaged: DamagedChunk[];
  /** Why the revision could not be read at all (a damaged or missing map), if so. */
  problem?: string;
  /** The revision was forgotten or expired while it was being verified; nothing was written. */
  gone?: boolean;
  /**
   * With Object Lock on the store and the revision still retained: whether the store retains its
   * objects long enough (what fell short was extended, or is listed in `failed`). Does not touch trust.
   */
  retention?: RetentionVerifyResult;
}

export interface VerifyOptions {
  logger: Logger;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  concurrency?: number;
}

/**
 * Re-reads every chunk of the given revisions and checks it against its hash. Good revisions become
 * `verified`, damaged ones `distrusted`; the result names each damaged chunk with its offset. A damaged
 * chunk file of the store is moved aside by the store itself (see `ChunkStore.getPooled`). A revision
 * whose map cannot be read is distrusted and verify goes on with the others. Chunks shared between
 * revisions are read once. Trust is written with `updateRevision`: a revision forgotten meanwhile is not
 * brought back, and tags changed meanwhile are kept. With Object Lock on the store, the retention of a
 * retained revision's objects is checked and extended where it falls short (verify-retention.ts).
 */
export async function verifyRevisions(
  archive: Archive,
  revisions: Revision[],
  options: VerifyOptions,
): Promise<RevisionVerifyResult[]> {
  const checked = new Map<string, string | null>(); // hash → null (good) or the reason it is bad
  const total = revisions.reduce((sum, r) => sum + r.size, 0);
  let done = 0;
  const results: RevisionVerifyResult[] = [];
  const retention = RetentionChecker.of(archive.store);
  for (const rev of revisions) {
    const layout = layoutOf(rev);
    options.signal?.throwIfAborted();
    let reader: RevisionReader;
    try {
      reader = await archive.openReader(rev);
    } catch (error) {
      if (isBackyError(error, 'LOCKED') || isBackyError(error, 'ABORTED')) throw error;
      const problem = (error as Error).message;
      const updated = await archive.updateRevision(rev.uuid, (current) => ({
        ...current,
        trust: 'distrusted',
        verified_at: new Date().toISOString(),
      }));
      // Its map went with its `.rev`: forgotten or expired meanwhile, not damaged.
      if (updated == null)
        options.logger.info({ revision: rev.uuid }, 'revision was forgotten while it was verified');
      else options.logger.error({ revision: rev.uuid, problem }, 'revision cannot be read: distrusted');
      results.push({ uuid: rev.uuid, ok: false, damaged: [], problem, gone: updated == null });
      done += rev.size;
      continue;
    }
    const damaged: DamagedChunk[] = [];
    // Only a chunk store's chunks are the store's objects (an image file is the archive's own).
    const retained = layout.chunkStore ? (retention?.revision(rev) ?? null) : null;
    try {
      await forEachChunk(
        reader.chunkCount,
        options.concurrency ?? 4,
        async (index) => {
          const hash = reader.chunkHash(index);
          if (hash != null) {
            // The chunk store holds a hash once for every revision; image files hold their own copies.
            const key = layout.verifyKey(rev.uuid, hash);
            let reason = checked.get(key);
            if (reason === undefined) {
              try {
                chunkBuffers.release(
                  await (reader.readPooled?.(index, { bypassCache: true }) ?? reader.read(index)),
                );
                reason = null;
              } catch (error) {
                if (!isBackyError(error, 'CHUNK_CORRUPT') && !isBackyError(error, 'CHUNK_MISSING'))
                  throw error;
                reason = (error as BackyError).message;
              }
              checked.set(key, reason);
            }
            if (reason != null) damaged.push({ index, offset: index * reader.chunkSize, hash, reason });
            else await retained?.chunk(hash);
          }
          done += reader.chunkLength(index);
          options.onProgress?.(done, total);
        },
        options.signal,
      );
      await retained?.files();
    } finally {
      await reader.close();
    }
    damaged.sort((a, b) => a.index - b.index);
    const ok = damaged.length === 0;
    const updated = await archive.updateRevision(rev.uuid, (current) => ({
      ...current,
      trust: ok ? 'verified' : 'distrusted',
      verified_at: new Date().toISOString(),
    }));
    if (updated == null) {
      options.logger.info({ revision: rev.uuid }, 'revision was forgotten while it was verified');
      results.push({ uuid: rev.uuid, ok, damaged, gone: true });
      continue;
    }
    if (ok) options.logger.info({ revision: rev.uuid }, 'revision verified');
    else
      options.logger.error(
        { revision: rev.uuid, damaged: damaged.slice(0, 20) },
        'revision is damaged: distrusted',
      );
    const kept = retained?.done();
    if (kept != null) logRetention(options.logger, rev.uuid, kept);
    results.push({ uuid: rev.uuid, ok, damaged, ...(kept != null ? { retention: kept } : {}) });
  }
  return results;
}

function logRetention(logger: Logger, uuid: string, r: RetentionVerifyResult): void {
  if (r.fixed > 0)
    logger.warn(
      { revision: uuid, fixed: r.fixed, checked: r.checked },
      "objects were retained too short by the store's Object Lock: extended",
    );
  if (r.failed.length > 0)
    logger.error(
      { revision: uuid, failed: r.failed.slice(0, 20), count: r.failed.length },
      "objects are retained too short by the store's Object Lock and could not be extended (the data is intact: trust unchanged)",
    );
}
