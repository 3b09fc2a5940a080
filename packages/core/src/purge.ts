import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { archiveAt, mapsOfCatalog, mapsOfDirectory } from './archive/references.js';
import { BackyError, isBackyError } from './errors.js';
import { proveHeld } from './lock.js';
import type { RegistryEntry } from './store/archive-registry.js';
import type { ChunkStore, StoreEntry } from './store/contract.js';

export interface PurgeResult {
  chunksDeleted: number;
  bytesFreed: number;
  chunksKept: number;
  /** Bytes of the chunks kept. */
  bytesKept: number;
  /** Bytes of the revisions' images in non-zero chunks, each revision (by ID) once (StoreStats). */
  referencedBytes: number;
  /** Revisions (distinct IDs) whose maps were read. */
  revisions: number;
  archives: number;
  /** Registry entries of archives that moved, dropped because the same archive is live elsewhere. */
  staleEntries: string[];
  /** Unreferenced chunks the store's Object Lock still retains: kept, for a later purge. */
  chunksRetained: number;
  bytesRetained: number;
  /** The latest retain-until among them (ISO time), or null. */
  retainedUntil: string | null;
}

export interface PurgeOptions {
  logger: Logger;
  /** Seconds to wait for running backups, restores and verifications to finish (default 0: fail at once). */
  waitSeconds?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Only report what would be deleted. */
  dryRun?: boolean;
  /**
   * The archive purge runs for. With a store that keeps the revisions (remote), its registry lists no
   * local archives: this directory's maps count besides the store's catalog.
   */
  archiveDir?: string;
  /** The files to consider (default: every file of the store), e.g. the chunks a failed backup wrote. */
  candidates?: AsyncIterable<StoreEntry>;
  /** Called for each file it deletes (or, with `dryRun`, would delete). */
  onDelete?: (entry: StoreEntry) => void;
}

/**
 * Which registered archives purge must read. An entry whose archive is live at its path counts; an entry
 * of an archive that moved (its ID is live at another registered path) is stale and dropped. Any other
 * entry — a path that is gone, or now holds a different archive — stops the purge: its chunks may still
 * be needed, and only the operator can say they are not (`--forget-archive`).
 */
export async function liveArchives(store: ChunkStore): Promise<{ live: string[]; stale: RegistryEntry[] }> {
  const entries = await store.registeredArchives();
  const states = await Promise.all(entries.map((e) => archiveAt(e.path)));
  const liveIds = new Set<string>();
  entries.forEach((e, i) => {
    const s = states[i]!;
    if (s.state === 'live' && s.id != null && (e.id == null || e.id === s.id)) liveIds.add(s.id);
  });
  const live: string[] = [];
  const stale: RegistryEntry[] = [];
  entries.forEach((e, i) => {
    const s = states[i]!;
    if (s.state === 'live' && (e.id == null || s.id === e.id)) {
      if (!live.includes(e.path)) live.push(e.path);
      return;
    }
    if (e.id != null && liveIds.has(e.id)) {
      stale.push(e);
      return;
    }
    const what =
      s.state === 'gone'
        ? 'is missing'
        : `now holds a different archive (ID ${(s as { id?: string | null }).id ?? 'none'}, registered ${e.id})`;
    throw new BackyError(
      'ARCHIVE_NOT_FOUND',
      `purge stopped, nothing deleted: archive ${e.path}, a user of chunk store ${store.root}, ${what}; if it moved, run \`backy -b NEWPATH status\` there to register its new place, or if it is gone for good, \`backy purge --forget-archive ${e.path}\``,
    );
  });
  return { live, stale };
}

/** `error` as purge's one-line reason to stop, saying that nothing was deleted. */
function stopped(error: unknown): BackyError {
  const message = (error as Error).message ?? String(error);
  if (message.startsWith('purge stopped')) return error as BackyError;
  return new BackyError(
    isBackyError(error) ? error.code : 'IO',
    `purge stopped, nothing deleted: ${message}`,
    { cause: error },
  );
}

/**
 * Deletes chunks that no revision of any archive using the store references. It holds the store's
 * purge lock exclusively, which every backup and every open reader (restore, verify, nbd-server) holds
 * shared, so a chunk a running backup has written (or relies on) is never deleted under it. Every map in
 * every registered archive counts (damaged revisions', interrupted backups' and unknown ones' too); an
 * archive or map it cannot read stops the purge before anything is deleted.
 */
export async function purgeStore(store: ChunkStore, options: PurgeOptions): Promise<PurgeResult> {
  if (!(await store.exists())) {
    // No store yet (no backup has run): nothing to delete, and no lock file to take. But chunks without
    // the registry mean it was lost: which archives use them is unknown, so none may go.
    for await (const entry of store.entries()) {
      if (entry.hash == null && entry.damagedOf == null) continue;
      throw new BackyError(
        'ARCHIVE_NOT_FOUND',
        `purge stopped, nothing deleted: chunk store ${store.root} holds chunks but its registry of archives (.archives/) is missing, so it cannot tell which archives use them; create the directory and run \`backy -b ARCHIVE status\` in each archive using the store to register it again`,
      );
    }
    return {
      chunksDeleted: 0,
      bytesFreed: 0,
      chunksKept: 0,
      bytesKept: 0,
      referencedBytes: 0,
      revisions: 0,
      archives: 0,
      staleEntries: [],
      ...NONE_RETAINED,
    };
  }
  const lock = await store.lock('exclusive', options.waitSeconds ?? 0);
  try {
    const referenced = new Set<string>();
    // A revision's map may be read twice (a remote store's catalog and the archive's copy of it).
    const dataBytes = new Map<string, number>();
    const { live, stale } = await liveArchives(store).catch((error: unknown) => {
      throw stopped(error);
    });
    // The archive purge runs for counts even when its own registry entry went missing.
    if (options.archiveDir != null && !live.includes(resolve(options.archiveDir)))
      live.push(resolve(options.archiveDir));
    try {
      const maps = [
        ...(store.catalog != null ? [mapsOfCatalog(store.catalog)] : []),
        ...live.map((dir) => mapsOfDirectory(dir, options.logger)),
      ];
      for (const archiveMaps of maps)
        for await (const { id, map } of archiveMaps) {
          for (const hash of map.uniqueHashes()) referenced.add(hash);
          if (!dataBytes.has(id)) dataBytes.set(id, map.dataBytes());
        }
    } catch (error) {
      throw stopped(error);
    }
    if (!options.dryRun) {
      for (const entry of stale) {
        options.logger.info({ archive: entry.path }, 'archive moved: dropping its old registry entry');
        await store.unregisterEntry(entry.entry);
      }
    }
    const result: PurgeResult = {
      chunksDeleted: 0,
      bytesFreed: 0,
      chunksKept: 0,
      bytesKept: 0,
      referencedBytes: [...dataBytes.values()].reduce((a, b) => a + b, 0),
      revisions: dataBytes.size,
      archives: live.length,
      staleEntries: stale.map((e) => e.path),
      ...NONE_RETAINED,
    };
    for await (const entry of options.candidates ?? store.entries()) {
      options.signal?.throwIfAborted();
      const hash = entry.hash ?? entry.damagedOf ?? null;
      // A quarantined chunk stays as evidence while revisions still reference its hash.
      if (hash != null && referenced.has(hash)) {
        if (entry.hash != null) {
          result.chunksKept++;
          result.bytesKept += entry.bytes;
        }
        continue;
      }
      if (!options.dryRun) {
        await proveHeld([lock]);
        if (!(await removeUnlessRetained(store, entry, result))) continue;
      }
      options.onDelete?.(entry);
      if (entry.hash != null) {
        result.chunksDeleted++;
        result.bytesFreed += entry.bytes;
      }
      options.onProgress?.(result.chunksDeleted + result.chunksKept, referenced.size);
    }
    options.logger.info({ ...result, dryRun: options.dryRun ?? false }, 'purge completed');
    return result;
  } finally {
    await lock.release();
  }
}

const NONE_RETAINED = { chunksRetained: 0, bytesRetained: 0, retainedUntil: null };

/** Removes `entry`; false when Object Lock still retains it (counted in `result`, kept). */
async function removeUnlessRetained(
  store: ChunkStore,
  entry: StoreEntry,
  result: PurgeResult,
): Promise<boolean> {
  try {
    await store.removeEntry(entry);
    return true;
  } catch (error) {
    if (!isBackyError(error, 'RETAINED')) throw error;
    result.chunksRetained++;
    result.bytesRetained += entry.bytes;
    const until = (error as { retainUntil?: number | null }).retainUntil;
    if (until != null && (result.retainedUntil == null || until > Date.parse(result.retainedUntil)))
      result.retainedUntil = new Date(until).toISOString();
    return false;
  }
}

/**
 * Removes the registry entries of `path` from the store, for an archive that is gone for good. Refuses
 * while an archive is still there.
 */
export async function forgetArchive(store: ChunkStore, path: string): Promise<number> {
  const lock = await store.lock('exclusive');
  try {
    const entries = (await store.registeredArchives()).filter((e) => e.path === path);
    if (entries.length === 0) {
      throw new BackyError(
        'USAGE',
        `--forget-archive ${path}: no such archive is registered with ${store.root}`,
      );
    }
    if ((await archiveAt(path)).state === 'live') {
      throw new BackyError(
        'USAGE',
        `--forget-archive ${path}: the archive is still there; refusing to forget it`,
      );
    }
    for (const e of entries) await store.unregisterEntry(e.entry);
    return entries.length;
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
