import type { Logger } from 'pino';
import { type Archive, layoutOf } from './archive/index.js';
import type { Progress } from './backup.js';
import { chunkBuffers } from './buffer-pool.js';
import { BackyError } from './errors.js';
import { type Lock, proveHeld } from './lock.js';
import type { Revision } from './revision.js';
import { forEachChunk } from './revision-stream.js';
import { CHUNK_HASH, hashChunk } from './store/chunk-hash.js';
import type { ChunkMap } from './store/chunk-map.js';

export interface CopyOptions {
  logger: Logger;
  signal?: AbortSignal;
  /** Phase `copy`: bytes of the revisions' images done out of all of them. */
  onProgress?: (progress: Progress) => void;
  /** Chunks read, written and read back at once (default 8: a remote store's latency is hidden). */
  concurrency?: number;
}

export interface CopyResult {
  uuid: string;
  /** `copied`, or `present` when the target had a revision of that uuid already (nothing sent). */
  status: 'copied' | 'present';
  /** Distinct chunks the target lacked and got. */
  chunksSent: number;
  /** Distinct chunks of the revision the target held already. */
  chunksPresent: number;
  /** Bytes of chunk data sent (as the image holds them). */
  bytesSent: number;
  /** Bytes the target store wrote for them (after its codec). */
  bytesStored: number;
}

/**
 * Copies `revisions` of `source` into the archive `target` (another directory, usually over another
 * store), oldest first, as the same revisions: same uuid, tags, trust, stats and verification. A
 * revision the target has already (same uuid) is skipped. Only the chunks the target store lacks are
 * sent, each read from the source verified against its hash and read back from the target after it was
 * written (`ChunkStore.equals`), so a copy never commits a chunk its store did not keep intact.
 *
 * Crash-safe like a backup: the revision's pending marker comes first, then the chunks, the store's
 * flush, the map, and last the `.rev` (a `RevisionTransaction`); until then nothing of it is visible, and the
 * target's next backup or copy removes the leftovers. The target's backup lock is held throughout (one
 * writer per archive, across hosts for a remote store), and both stores' shared locks, so no purge
 * deletes a chunk being copied or one the copied revision relies on.
 */
export async function copyRevisions(
  source: Archive,
  target: Archive,
  revisions: readonly Revision[],
  options: CopyOptions,
): Promise<CopyResult[]> {
  const { logger } = options;
  const signal = options.signal ?? new AbortController().signal;
  if (source.path === target.path) {
    throw new BackyError('USAGE', `copy: ${target.path} is the source archive itself`);
  }
  if (!target.layout.chunkStore) {
    throw new BackyError(
      'CONFIG_INVALID',
      `copy: the target archive ${target.path} has layout ${target.config.layout}; copies go into layout chunked`,
    );
  }
  await assertSameChunkNames(source, target);
  const ordered = [...revisions].sort(
    (a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || a.uuid.localeCompare(b.uuid),
  );
  const locks: Lock[] = [];
  try {
    locks.push(await target.lockBackup());
    await target.prepareStore();
    locks.push(await target.store.lock('shared'));
    locks.push(await source.store.lock('shared'));
    await target.cleanup(logger);

    const scan = await target.scan();
    // A damaged `.rev` of that uuid counts as there: it is the operator's to look at, never overwritten.
    const there = new Set([...scan.complete.map((r) => r.uuid), ...scan.damaged.map((d) => d.id)]);
    const todo = ordered.filter((r) => !there.has(r.uuid));
    const unsupported = todo.find((r) => !layoutOf(r).chunkStore);
    if (unsupported != null) {
      throw new BackyError(
        'USAGE',
        `copy: revision ${unsupported.uuid} is in the ${unsupported.backend_type} format; only revisions of layout chunked can be copied (nothing was copied)`,
      );
    }
    const total = todo.reduce((sum, r) => sum + r.size, 0);
    let done = 0;
    const progress = (bytes: number) => {
      done += bytes;
      options.onProgress?.({ phase: 'copy', done, total });
    };
    const results: CopyResult[] = [];
    for (const rev of ordered) {
      signal.throwIfAborted();
      if (there.has(rev.uuid)) {
        logger.info({ revision: rev.uuid, target: target.path }, 'revision is in the target already');
        results.push({
          uuid: rev.uuid,
          status: 'present',
          chunksSent: 0,
          chunksPresent: 0,
          bytesSent: 0,
          bytesStored: 0,
        });
        continue;
      }
      results.push(await copyOne(source, target, rev, { ...options, signal, locks, progress }));
    }
    return results;
  } finally {
    for (const lock of locks.reverse()) await lock.release();
  }
}

/**
 * Chunks keep their names in a copy: both stores must name content alike (the same encryption key, or
 * none on both sides). Re-keying a copy would mean rewriting every map; it is not done. Reads nothing
 * from either store, so `copy --init-from-source` checks it before it writes the target.
 */
export async function assertSameChunkNames(source: Archive, target: Archive): Promise<void> {
  const probe = Buffer.from('backy copy: do both stores name this content alike?');
  const nameIn = (archive: Archive) => archive.store.naming?.name(probe) ?? hashChunk(probe, CHUNK_HASH);
  if ((await nameIn(source)) !== (await nameIn(target))) {
    throw new BackyError(
      'USAGE',
      `copy: the target ${target.path} names chunks differently from the source (another store.encryption key, or encrypted on one side only); a copy needs the same key on both sides`,
    );
  }
}

async function copyOne(
  source: Archive,
  target: Archive,
  rev: Revision,
  options: CopyOptions & { signal: AbortSignal; locks: Lock[]; progress: (bytes: number) => void },
): Promise<CopyResult> {
  const { signal } = options;
  const log = options.logger.child({ revision: rev.uuid });
  const map = await source.loadMap(rev);
  if (map.size !== rev.size) {
    throw new BackyError(
      'REVISION_INVALID',
      `revision ${rev.uuid}: map size ${map.size} differs from recorded size ${rev.size}`,
    );
  }
  const lengths = chunkLengths(map);
  const missing = await target.store.missing(lengths.keys());
  const toSend = missing.reduce((sum, hash) => sum + lengths.get(hash)!, 0);
  options.progress(rev.size - toSend);
  const result: CopyResult = {
    uuid: rev.uuid,
    status: 'copied',
    chunksSent: missing.length,
    chunksPresent: lengths.size - missing.length,
    bytesSent: 0,
    bytesStored: 0,
  };
  log.info(
    { from: source.path, to: target.path, send: missing.length, present: result.chunksPresent },
    'copy started',
  );
  const transaction = await target.begin(rev.uuid);
  try {
    await forEachChunk(
      missing.length,
      options.concurrency ?? 8,
      async (i) => {
        const hash = missing[i]!;
        // A pooled buffer, handed back at once: a fresh 4 MiB buffer per chunk was garbage that the main
        // thread's heap let pile up (peak RSS of a 1 GiB copy 320 MB).
        const data = await source.store.getPooled(hash, map.algorithm);
        try {
          // Not `+= await`: that reads the sum before the await, and concurrent chunks' bytes were lost.
          const stored = await putVerified(target, hash, data, log);
          result.bytesStored += stored;
          result.bytesSent += data.length;
          options.progress(data.length);
        } finally {
          chunkBuffers.release(data);
        }
      },
      signal,
    );
    // Every chunk the map names is in the target now: the present ones by `missing` (and the shared
    // lock keeps purge away), the sent ones read back. A second `missing` pass would cost a request per
    // chunk on a remote store and prove nothing more.
    await target.store.flush();
    signal.throwIfAborted();
    await transaction.saveMap(map);
    // A remote store's lease that lapsed may have let a purge in: no commit then.
    await proveHeld(options.locks);
    // The same revision, bound to the map just written (a revision from before maps were bound gets it).
    const committed = { ...rev, map_checksum: map.checksum ?? rev.map_checksum };
    for (const error of await transaction.commit(committed))
      log.warn({ err: error }, 'revision committed; a step after the commit failed, the next run repairs it');
  } catch (error) {
    await transaction.abort();
    const err = signal.aborted ? new BackyError('ABORTED', 'copy aborted', { cause: error }) : error;
    log.error({ err }, 'copy failed; the revision was not committed in the target');
    throw err;
  }
  // The revision schema has no field for where a revision came from: the log keeps it.
  log.info(
    {
      from: source.path,
      to: target.path,
      chunks_sent: result.chunksSent,
      chunks_present: result.chunksPresent,
      bytes_sent: result.bytesSent,
      bytes_stored: result.bytesStored,
    },
    'revision copied',
  );
  return result;
}

/**
 * Writes a chunk into the target and reads it back; a stored copy that does not hold `data` (damaged in
 * transit or by the store, or a damaged copy that was there before) is written anew once, then it is an
 * error. Returns the bytes stored.
 */
async function putVerified(target: Archive, hash: string, data: Buffer, log: Logger): Promise<number> {
  let { written } = await target.store.put(hash, data);
  if (await target.store.equals(hash, data)) return written;
  log.warn({ hash }, 'a chunk read back from the target differs from what was sent: writing it again');
  written += (await target.store.put(hash, data, { rewrite: true })).written;
  if (await target.store.equals(hash, data)) return written;
  throw new BackyError(
    'CHUNK_CORRUPT',
    `chunk ${hash}: the target store ${target.store.root} does not keep it intact (read back twice)`,
  );
}

/** The distinct non-zero chunks of a map, each with its length. */
function chunkLengths(map: ChunkMap): Map<string, number> {
  const lengths = new Map<string, number>();
  for (let i = 0; i < map.chunkCount; i++) {
    const hash = map.get(i);
    if (hash != null && !lengths.has(hash)) lengths.set(hash, map.chunkLength(i));
  }
  return lengths;
}
