import type { Logger } from 'pino';
import type { Archive } from './archive.js';
import { type BackyError, isBackyError } from './errors.js';
import type { Revision } from './revision.js';
import type { RevisionReader } from './revision-io.js';
import { forEachChunk } from './revision-stream.js';
import { chunkBuffers } from './store/buffer-pool.js';

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
}

export interface VerifyOptions {
  logger: Logger;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  concurrency?: number;
}

/**
 * Re-reads every chunk of the given revisions and checks it against its hash. Good revisions become
 * `verified`, damaged ones `distrusted`; the result names each damaged chunk with its offset.
 * Chunks shared between revisions are read once.
 */
export async function verifyRevisions(
  archive: Archive,
  revisions: Revision[],
  options: VerifyOptions,
): Promise<RevisionVerifyResult[]> {
  const lock = await archive.store.lock('shared');
  let readers: RevisionReader[] = [];
  try {
    const checked = new Map<string, string | null>(); // hash → null (good) or the reason it is bad
    readers = await Promise.all(revisions.map((r) => archive.openReader(r)));
    const total = readers.reduce((sum, r) => sum + r.size, 0);
    let done = 0;
    const results: RevisionVerifyResult[] = [];
    for (const [i, rev] of revisions.entries()) {
      const reader = readers[i]!;
      const damaged: DamagedChunk[] = [];
      await forEachChunk(
        reader.chunkCount,
        options.concurrency ?? 4,
        async (index) => {
          const hash = reader.chunkHash(index);
          if (hash != null) {
            // The chunk store holds a hash once for every revision; image files hold their own copies.
            const key = rev.backend_type === 'images' ? `${rev.uuid}/${hash}` : hash;
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
          }
          done += reader.chunkLength(index);
          options.onProgress?.(done, total);
        },
        options.signal,
      );
      damaged.sort((a, b) => a.index - b.index);
      const ok = damaged.length === 0;
      const updated: Revision = { ...rev, trust: ok ? 'verified' : 'distrusted' };
      await archive.writeRevision(updated);
      if (ok) options.logger.info({ revision: rev.uuid }, 'revision verified');
      else
        options.logger.error(
          { revision: rev.uuid, damaged: damaged.slice(0, 20) },
          'revision is damaged: distrusted',
        );
      results.push({ uuid: rev.uuid, ok, damaged });
    }
    return results;
  } finally {
    await Promise.all(readers.map((r) => r.close()));
    await lock.release();
  }
}
