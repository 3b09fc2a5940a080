import type { Logger } from 'pino';
import { fenceGuard } from './archive/fence.js';
import { Archive, isCommitUncertain, type RevisionTransaction } from './archive/index.js';
import { chunkBuffers } from './buffer-pool.js';
import { BackyError, ioError, isBackyError } from './errors.js';
import { recordHistoryStarted } from './history-record.js';
import { newRevisionId } from './ids.js';
import { removeLeftoverChunks } from './leftover-chunks.js';
import { mmh3Hex } from './legacy/mmh3.js';
import { type Lock, proveHeld } from './lock.js';
import { restrictModes } from './private-modes.js';
import {
  failedOwnVerification,
  type Revision,
  type RevisionData,
  type RevisionRetention,
  type RevisionStats,
  type Verification,
} from './revision.js';
import type { RevisionReader } from './revision-io.js';
import { MANUAL_TAG_PREFIX, tagNameSchema } from './schedule.js';
import type { BackupSource, VerificationResult } from './source/contract.js';
import { hashChunk, isAllZero } from './store/chunk-hash.js';
import type { ChunkMap } from './store/chunk-map.js';

export interface Progress {
  phase: 'backup' | 'verify' | 'restore' | 'purge' | 'copy';
  done: number;
  total: number;
}

export interface BackupOptions {
  tags: string[];
  /** Accept tags the schedule does not name. */
  force?: boolean;
  logger: Logger;
  signal?: AbortSignal;
  now?: () => Date;
  onProgress?: (progress: Progress) => void;
  /** Time budget for the source's verification (default 5 minutes). */
  verifyBudgetMs?: number;
  /** How messages name the source, e.g. its filename (default: `<type> source`). */
  sourceName?: string;
  /**
   * Fleet mode's fencing token (docs/fleet.md): the backup starts and commits only while the archive's
   * fence holds exactly this token; otherwise it fails with LOCKED and leaves no revision.
   */
  fenceToken?: number;
  /**
   * The least the store's Object Lock retains the revision (ms since the epoch; `--retain-until`): a
   * floor under what its tags give it. Only with `store.object-lock`.
   */
  retainUntil?: number;
  /**
   * Back up only if the archive's newest complete revision is still this one (`none`: the archive has
   * none), as read from the store's catalog under the writer lease and after the fence was raised;
   * otherwise fail with SUPERSEDED and do nothing. Fleet mode passes the newest revision the scheduler
   * knew of when it found the slot due, so a slot another server made meanwhile is not made again.
   */
  ifNewest?: string;
}

/**
 * Makes one revision: locks the archive, removes leftovers of interrupted runs, lets the source write the
 * new content, seals the chunk map, lets the source verify it, and only then writes the `.rev`, which is
 * what makes the revision exist. On any failure nothing becomes visible.
 */
export async function runBackup(
  archive: Archive,
  source: BackupSource,
  options: BackupOptions,
): Promise<Revision> {
  const { logger } = options;
  const now = options.now ?? (() => new Date());
  const signal = options.signal ?? new AbortController().signal;
  const tags = validateTags(archive, options.tags, options.force ?? false);
  const floor = retentionFloor(archive, options.retainUntil);

  const locks: Lock[] = [];
  // The chunks a failed backup wrote anew: removed once its locks are released (see leftover-chunks.ts).
  let leftover: ReadonlySet<string> | null = null;
  try {
    locks.push(await archive.lockBackup(options.fenceToken));
    const guard = await fenceGuard(archive, options.fenceToken, locks[0]!);
    await archive.prepareStore();
    // Archives written before backy made them private are fixed here, once.
    await restrictModes(archive.path, archive.store.catalog == null ? archive.store.root : null, logger);
    locks.push(await archive.store.lock('shared'));
    await archive.cleanup(logger);
    if (options.ifNewest != null) await archive.pullCatalog(logger); // under the writer lease

    const scan = await archive.scan();
    for (const line of Archive.describeScan(scan)) logger.warn(line);
    // A revision that failed its own verification is evidence, not a base to build upon or a parent.
    const existing = scan.complete.filter((r) => !failedOwnVerification(r));
    const newest = existing.at(-1) ?? null;
    const newestAny = scan.complete.at(-1) ?? null;
    if (options.ifNewest != null) assertNewest(archive, newestAny, options.ifNewest);
    const started = now();
    const secondsSince = (from: Date) => (now().getTime() - from.getTime()) / 1000;
    const revision = newRevision(archive, started, newest, tags, floor);
    const log = logger.child({ revision: revision.uuid });
    // After a distrusted revision (by verify, distrust, or a failed verification of its own backup),
    // chunks the store holds may be damaged: every chunk this backup touches is written anew.
    const rewrite = newestAny?.trust === 'distrusted';
    if (rewrite) {
      log.warn(
        { parent: newestAny.uuid },
        'newest revision is distrusted: full backup, every chunk is rewritten',
      );
    }
    const base = await archive.usableParent(existing, log);
    const transaction: RevisionTransaction = await archive.begin(revision.uuid);
    const { writer, parentReader } = await transaction.openWriter(base, { rewrite, logger: log });
    let bytesRead = 0;
    const sourceInfo: Record<string, unknown> = {};
    log.info({ tags, parent: revision.parent }, 'backup started');
    let success = false;
    let commitStarted = false;
    try {
      signal.throwIfAborted();
      await source.backup({
        revision,
        parent: base != null && parentReader ? { revision: base.revision, reader: parentReader } : null,
        writer,
        logger: log,
        signal,
        reportRead: (bytes) => {
          bytesRead += bytes;
        },
        progress: (done, total) => options.onProgress?.({ phase: 'backup', done, total }),
        remember: (info) => Object.assign(sourceInfo, info),
      });
      signal.throwIfAborted();
      const map = await writer.seal();
      revision.size = map.size;
      // Binds the map to this revision: every later read checks it.
      if (map.checksum != null) revision.map_checksum = map.checksum;
      log.info({ seconds: secondsSince(started), bytes_read: bytesRead }, 'source read and chunks stored');
      await checkSealed(archive, map, newestAny, sourceInfo, log, options.sourceName);
      const verification = await verifyFresh(source, map, {
        revision,
        openReader: () => transaction.reader(map),
        freshChunks: writer.freshChunks,
        log,
        signal,
        options,
        now,
      });
      complete(revision, { ...verification, timestamp: now().toISOString() }, log, {
        bytes_written: writer.stats.bytesWritten,
        bytes_read: bytesRead,
        duration: secondsSince(started),
        chunks_written: writer.stats.chunksWritten,
        chunks_reused: writer.stats.chunksReused,
        chunks_zero: writer.stats.chunksZero,
      });
      if (Object.keys(sourceInfo).length > 0) revision.source_info = sourceInfo;
      signal.throwIfAborted();
      // A remote store's lease that lapsed (the process stalled) may have let purge in: no commit then.
      await proveHeld(locks);
      // Once committed the revision exists, complete and verified: the clean-up below must never run
      // for it (it would remove its map and its fresh chunks), nor for one that may exist.
      commitStarted = true;
      const late = await transaction.commit(revision, guard);
      success = true;
      await committed(archive, revision as Revision, late, log);
      return revision as Revision;
    } catch (error) {
      // Never reached once committed (`success`). A commit that cannot tell whether it happened keeps
      // every file: the next backup's clean-up decides by the `.rev` it finds.
      if (commitStarted && isCommitUncertain(error)) {
        log.error({ err: error }, 'backup may not have been committed; nothing was removed');
        throw error;
      }
      // Its fresh chunks go only with its files: a revision that may exist keeps both.
      const removed = await transaction.abort();
      if (removed && archive.layout.chunkStore) leftover = writer.freshChunks;
      throw failure(error, signal, log, removed ? null : revision.uuid);
    } finally {
      await finish(source, parentReader, { revision, success, logger: log });
    }
  } finally {
    for (const lock of locks.reverse()) await lock.release();
    if (leftover != null) await removeLeftoverChunks(archive.store, leftover, logger, archive.path);
  }
}

/** The error a failed backup throws (and logs): aborted, or what went wrong. */
function failure(error: unknown, signal: AbortSignal, log: Logger, kept: string | null): BackyError {
  const err = signal.aborted
    ? new BackyError('ABORTED', 'backup aborted', { cause: error })
    : ioError(error, 'backup failed');
  if (kept == null) log.error({ err }, 'backup failed; no revision was created');
  else
    log.error(
      { err, revision: kept },
      'backup failed after its revision may have been committed; nothing of it was removed, the next backup sorts it out',
    );
  return err;
}

/** Closes the parent's reader and lets the source clean up, whatever the outcome; failures are warnings. */
async function finish(
  source: BackupSource,
  parentReader: RevisionReader | null,
  context: { revision: RevisionData; success: boolean; logger: Logger },
): Promise<void> {
  const log = context.logger;
  await parentReader?.close().catch((error) => {
    log.warn({ err: error }, 'closing the parent revision after the backup failed');
  });
  await source.finish?.(context).catch((error) => {
    log.warn({ err: error }, 'source clean-up after the backup failed');
  });
}

/**
 * The retention a revision is given (`retainUntil`, ms): the commit takes it as the floor under the one
 * its tags give it (retainUntilOf). Null without.
 */
function retentionFloor(archive: Archive, retainUntil: number | undefined): RevisionRetention | null {
  if (retainUntil == null) return null;
  const lock = archive.store.objectLock ?? null;
  if (lock == null)
    throw new BackyError(
      'USAGE',
      `a retain-until was given, but the store of ${archive.path} has no Object Lock (store.object-lock)`,
    );
  const until = new Date(retainUntil).toISOString();
  return { mode: lock.mode, until, chunks_until: until };
}

/** The new revision as it starts: no stats yet (it is not complete until the commit). */
function newRevision(
  archive: Archive,
  started: Date,
  parent: Revision | null,
  tags: string[],
  retention: RevisionRetention | null,
): RevisionData {
  return {
    uuid: newRevisionId(),
    timestamp: started.toISOString(),
    parent: parent?.uuid ?? null,
    tags,
    trust: 'trusted',
    size: 0,
    backend_type: archive.config.layout,
    source_type: archive.config.source.type,
    ...(retention != null ? { retention } : {}),
  };
}

/** Records the verification (a failed one distrusts the revision) and the stats. */
function complete(
  revision: RevisionData,
  verification: Verification,
  log: Logger,
  stats: RevisionStats,
): void {
  revision.verification = verification;
  if (!verification.ok) {
    revision.trust = 'distrusted';
    log.error(
      { mismatches: verification.mismatches.slice(0, 20) },
      'verification against the source failed: revision distrusted',
    );
  }
  revision.stats = stats;
}

/** After the commit: what failed late is a warning, and the archive's history start is recorded. */
async function committed(archive: Archive, revision: Revision, late: unknown[], log: Logger): Promise<void> {
  for (const error of late)
    log.warn({ err: error }, 'revision committed; a step after the commit failed, the next run repairs it');
  await recordHistoryStarted(archive.path, revision).catch((error) => {
    log.warn({ err: error }, 'could not record the archive history start; the next backup records it');
  });
  log.info(
    { stats: revision.stats, size: revision.size, verification: revision.verification?.method },
    'backup completed',
  );
}

/**
 * The sealed new revision's checks before it is verified: not empty unless allowed, a size change said
 * loudly (and recorded in `sourceInfo`), and every chunk it names in the store.
 */
async function checkSealed(
  archive: Archive,
  map: ChunkMap,
  newestAny: Revision | null,
  sourceInfo: Record<string, unknown>,
  log: Logger,
  name: string | undefined,
): Promise<void> {
  const sourceName = name ?? `${archive.config.source.type} source`;
  // An empty image is never a disk worth a revision unless the config says so: recorded, it would
  // become `last` and push real revisions out of the keep counts while every run reports success.
  if (map.size === 0 && archive.config.source['allow-empty'] !== true) {
    throw new BackyError(
      'SOURCE_FAILED',
      `${sourceName} is empty (0 bytes${newestAny != null ? `; revision ${newestAny.uuid} had ${newestAny.size}` : ''}): refusing to record an empty disk; set source.allow-empty: true in ${Archive.configPath(archive.path)} if it may be empty`,
    );
  }
  // A source that suddenly has another size is often another disk (a relative path resolved
  // elsewhere, a device renamed): back it up, but say so loudly, in the log and in the revision.
  if (newestAny != null && newestAny.size !== map.size) {
    sourceInfo.size_changed = { from: newestAny.size, to: map.size, previous: newestAny.uuid };
    log.warn(
      { source: sourceName, from: newestAny.size, to: map.size, previous: newestAny.uuid },
      `source size changed from ${newestAny.size} to ${map.size} bytes since revision ${newestAny.uuid}: check that ${sourceName} is still the right disk`,
    );
  }
  if (archive.layout.chunkStore) {
    // Never commit a revision that names a chunk the store does not hold.
    const missing = await archive.store.missing(map.uniqueHashes());
    if (missing.length > 0) {
      throw new BackyError(
        'CHUNK_MISSING',
        `${missing.length} chunk${missing.length === 1 ? '' : 's'} the new revision references ${missing.length === 1 ? 'is' : 'are'} missing from ${archive.store.root} (first: ${missing[0]}); nothing was committed`,
      );
    }
  }
}

/** The source's verification of the new revision (`method: none` when it has none). */
async function verifyFresh(
  source: BackupSource,
  map: ChunkMap,
  context: {
    revision: RevisionData;
    openReader: () => RevisionReader;
    freshChunks: ReadonlySet<string>;
    log: Logger;
    signal: AbortSignal;
    options: BackupOptions;
    now: () => Date;
  },
): Promise<VerificationResult> {
  const { revision, freshChunks, log, signal, options, now } = context;
  if (source.verify == null) {
    // Not verified: recorded as such; `backy verify` still checks the stored chunks.
    return { method: 'none', chunks_checked: 0, chunks_total: map.chunkCount, ok: true, mismatches: [] };
  }
  const fresh = context.openReader();
  const verifyStarted = now();
  const verification = await source
    .verify({
      revision,
      reader: fresh,
      freshChunks,
      checkChunk: chunkChecker(fresh, freshChunks, log),
      logger: log,
      signal,
      budgetMs: options.verifyBudgetMs ?? 5 * 60_000,
      progress: (done, total) => options.onProgress?.({ phase: 'verify', done, total }),
      allocate: (length) => chunkBuffers.acquire(length),
      release: (buffer) => chunkBuffers.release(buffer),
    })
    .finally(() => fresh.close());
  log.info(
    {
      seconds: (now().getTime() - verifyStarted.getTime()) / 1000,
      method: verification.method,
      chunks_checked: verification.chunks_checked,
    },
    'verification against the source finished',
  );
  return verification;
}

function validateTags(archive: Archive, tags: string[], force: boolean): string[] {
  const clean = [...new Set(tags.map((t) => t.trim()).filter((t) => t !== ''))];
  if (clean.length === 0)
    throw new BackyError('USAGE', 'no tags given; name at least one tag, e.g. `backy backup daily`');
  for (const tag of clean) {
    const ok = tagNameSchema.safeParse(tag);
    if (!ok.success)
      throw new BackyError('USAGE', `invalid tag ${JSON.stringify(tag)}: ${ok.error.issues[0]?.message}`);
  }
  const scheduled = Object.keys(archive.config.schedule);
  if (!force && scheduled.length > 0) {
    const unknown = clean.filter((t) => !t.startsWith(MANUAL_TAG_PREFIX) && !scheduled.includes(t));
    if (unknown.length > 0) {
      throw new BackyError(
        'USAGE',
        `tag ${unknown.map((t) => JSON.stringify(t)).join(', ')} is not in the schedule (${scheduled.join(', ')}); use -f to force or a manual: tag`,
      );
    }
  }
  return clean;
}

/**
 * `VerifyContext.checkChunk` over a fresh revision: the source's bytes, read again, are compared byte
 * for byte with what the revision stored, for every chunk, the reused ones too. Each chunk stored by
 * this backup was hashed from the very bytes that were written, so equal bytes prove both that the
 * source has not changed and that the chunk file is intact. A reused chunk is read back the same way,
 * so a chunk file damaged since an earlier backup is caught now (and the revision distrusted, which
 * makes the next backup rewrite it) instead of being trusted until a restore needs it.
 */
export function chunkChecker(
  reader: RevisionReader,
  _freshChunks: ReadonlySet<string>,
  logger: Logger,
): (index: number, data: Buffer) => Promise<boolean> {
  return async (index, data) => {
    const expected = reader.chunkHash(index);
    if (expected == null) return isAllZero(data);
    try {
      if (reader.equalsStored) {
        if (await reader.equalsStored(index, data)) return true;
        // Which side differs: the source (changed under the backup) or the store (a damaged chunk)?
        if ((await hashOf(data, reader)) === expected)
          logger.error({ chunk: index, hash: expected }, 'stored chunk is damaged');
        return false;
      }
      if ((await hashOf(data, reader)) !== expected) return false;
      chunkBuffers.release(await (reader.readPooled?.(index) ?? reader.read(index)));
      return true;
    } catch (error) {
      if (!isBackyError(error, 'CHUNK_CORRUPT') && !isBackyError(error, 'CHUNK_MISSING')) throw error;
      logger.error({ err: error, chunk: index }, 'stored chunk is damaged');
      return false;
    }
  };
}

function hashOf(data: Buffer, reader: RevisionReader): Promise<string> {
  if (reader.hashData != null) return reader.hashData(data);
  return reader.hashAlgorithm === 'mmh3'
    ? Promise.resolve(mmh3Hex(data))
    : hashChunk(data, reader.hashAlgorithm);
}

/** `--if-newest`: SUPERSEDED unless the archive's newest complete revision is `expected` (`none`: no revision). */
function assertNewest(archive: Archive, newest: Revision | null, expected: string): void {
  const actual = newest?.uuid ?? 'none';
  if (actual === expected) return;
  throw new BackyError(
    'SUPERSEDED',
    `${archive.path}: the newest revision is ${actual === 'none' ? 'none' : `${actual} (${newest!.timestamp})`}, not ${expected}: another server backed the archive up meanwhile, so this backup did nothing`,
  );
}
