import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { CONFIG_FILE, readArchiveId } from './archive.js';
import { BackyError, ioError, isBackyError } from './errors.js';
import { mayExist } from './fs-util.js';
import type { RegistryEntry } from './store/archive-registry.js';
import { ChunkMap } from './store/chunk-map.js';
import type { ChunkStore, RevisionCatalog, StoreEntry } from './store/contract.js';

export interface PurgeResult {
  chunksDeleted: number;
  bytesFreed: number;
  chunksKept: number;
  archives: number;
  /** Registry entries of archives that moved, dropped because the same archive is live elsewhere. */
  staleEntries: string[];
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

/** What an archive directory registered with a store holds now. */
async function archiveAt(
  path: string,
): Promise<{ state: 'live'; id: string | null } | { state: 'gone' | 'other' }> {
  const config = await stat(join(path, CONFIG_FILE)).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return false;
      throw ioError(error, `reading archive ${path}`);
    },
  );
  if (!config) return { state: 'gone' };
  return { state: 'live', id: await readArchiveId(path) };
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
    return { chunksDeleted: 0, bytesFreed: 0, chunksKept: 0, archives: 0, staleEntries: [] };
  }
  const lock = await store.lock('exclusive', options.waitSeconds ?? 0);
  try {
    const referenced = new Set<string>();
    const { live, stale } = await liveArchives(store).catch((error: unknown) => {
      throw stopped(error);
    });
    // The archive purge runs for counts even when its own registry entry went missing.
    if (options.archiveDir != null && !live.includes(resolve(options.archiveDir)))
      live.push(resolve(options.archiveDir));
    if (store.catalog != null) await addCatalogReferences(store.catalog, referenced);
    for (const dir of live) {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (error) {
        throw new BackyError(
          'IO',
          `purge stopped, nothing deleted: ${ioError(error, `reading archive ${dir}`).message}`,
          { cause: error },
        );
      }
      for (const name of names) {
        if (!name.endsWith('.map') || name.startsWith('.')) continue;
        let map: ChunkMap;
        try {
          map = await ChunkMap.load(join(dir, name));
        } catch (error) {
          // Listed a moment ago and gone now, with its `.rev`: the revision was forgotten or expired
          // meanwhile (those take the archive's revisions lock, not the store's, and remove the `.rev`
          // first). Maps are only ever replaced by rename onto the same name, so that map protects
          // nothing any more. A `.rev` still there without its map stops purge like any unreadable map.
          if (
            (error as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT' &&
            !(await mayExist(join(dir, `${name.slice(0, -'.map'.length)}.rev`)))
          ) {
            options.logger.debug(
              { archive: dir, map: name },
              'revision removed while purge read the archive',
            );
            continue;
          }
          throw new BackyError(
            'REVISION_INVALID',
            `purge stopped, nothing deleted: ${(error as Error).message}`,
            { cause: error },
          );
        }
        for (const hash of map.uniqueHashes()) referenced.add(hash);
      }
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
      archives: live.length,
      staleEntries: stale.map((e) => e.path),
    };
    for await (const entry of options.candidates ?? store.entries()) {
      options.signal?.throwIfAborted();
      const hash = entry.hash ?? entry.damagedOf ?? null;
      // A quarantined chunk stays as evidence while revisions still reference its hash.
      if (hash != null && referenced.has(hash)) {
        if (entry.hash != null) result.chunksKept++;
        continue;
      }
      if (!options.dryRun) {
        lock.assertHeld?.();
        await store.removeEntry(entry);
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

/** Every chunk the maps in a remote store's catalog reference; a map it cannot read stops the purge. */
async function addCatalogReferences(catalog: RevisionCatalog, referenced: Set<string>): Promise<void> {
  for (const id of (await catalog.list()).keys()) {
    const bytes = await catalog.read(id, 'map');
    if (bytes == null) {
      // Forgotten meanwhile (the `.rev` goes first), or a revision that has no map of this store. A
      // chunked revision whose `.rev` is still there without its map is no proof of anything: stop.
      const rev = await catalog.read(id, 'rev');
      if (rev == null || !isChunked(rev)) continue;
      throw new BackyError(
        'REVISION_INVALID',
        `purge stopped, nothing deleted: revision ${id} in the store has no map (${id}.map is missing)`,
      );
    }
    let map: ChunkMap;
    try {
      map = ChunkMap.deserialize(bytes, `${id}.map in the store`);
    } catch (error) {
      throw new BackyError(
        'REVISION_INVALID',
        `purge stopped, nothing deleted: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    for (const hash of map.uniqueHashes()) referenced.add(hash);
  }
}

/** Whether a `.rev`'s bytes describe a revision of the chunked layout (the one with a map in the store). */
function isChunked(rev: Buffer): boolean {
  try {
    const data = parseYaml(rev.toString('utf8')) as { backend_type?: unknown } | null;
    return data?.backend_type == null || data.backend_type === 'chunked';
  } catch {
    return true; // unreadable: assume the worst
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
