// Reading revisions: their maps (checked against the `.rev`), readers in each revision's own layout,
// and the parent a new backup builds upon.
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { chunkBuffers } from '../buffer-pool.js';
import { BackyError, ioError } from '../errors.js';
import { ChunkedRevisionReader } from '../layout/chunked.js';
import { ImagesRevisionReader } from '../layout/images.js';
import { LegacyChunkedReader, readLegacyMapping } from '../legacy/chunked.js';
import type { Revision, RevisionData } from '../revision.js';
import type { RevisionReader } from '../revision-io.js';
import { CHUNK_HASH, hashChunk, isAllZero } from '../store/chunk-hash.js';
import { ChunkMap } from '../store/chunk-map.js';
import type { ChunkStore } from '../store/contract.js';
import { type ArchiveParts, hasImageFile, imagePath, mapPath } from './paths.js';

/**
 * A revision's map, checked to be the one the revision was written with (the checksum its `.rev`
 * records): another revision's map copied over it would hand out another image, in every reader.
 */
export async function loadMap(
  dir: string,
  rev: Pick<RevisionData, 'uuid' | 'map_checksum'>,
): Promise<ChunkMap> {
  const path = mapPath(dir, rev.uuid);
  const map = await ChunkMap.load(path);
  if (rev.map_checksum != null && map.checksum !== rev.map_checksum) {
    throw new BackyError(
      'REVISION_INVALID',
      `revision ${rev.uuid}: its map ${path} is not the one it was written with (the .rev records checksum ${rev.map_checksum.slice(0, 16)}…, the map has ${map.checksum?.slice(0, 16)}…): another revision's map copied over it, or altered`,
    );
  }
  return map;
}

/** A reader over a revision's map in the revision's own layout. */
export function readerFor(
  dir: string,
  store: ChunkStore,
  rev: Pick<RevisionData, 'uuid' | 'backend_type'>,
  map: ChunkMap,
): RevisionReader {
  return hasImageFile(rev)
    ? new ImagesRevisionReader(imagePath(dir, rev.uuid), map)
    : new ChunkedRevisionReader(store, map);
}

/**
 * Opens a revision for reading. The reader holds the chunk store's shared lock until `close()`, so
 * `purge` cannot delete a chunk it may still read; callers cannot forget to take it.
 */
export async function openReader(archive: ArchiveParts, rev: RevisionData): Promise<RevisionReader> {
  const dir = archive.path;
  if (rev.backend_type === 'legacy-chunked') {
    // backy 2.x's chunk files: purge never touches them, so no store lock is needed.
    return new LegacyChunkedReader(join(dir, 'chunks'), await readLegacyMapping(imagePath(dir, rev.uuid)));
  }
  // Only chunks in the store can be purged: image files (images layout, backy 2.x) need no store lock.
  const lock = rev.backend_type === 'chunked' ? await archive.store.lock('shared') : null;
  try {
    const map =
      rev.backend_type === 'cowfile'
        ? await legacyImageMap(imagePath(dir, rev.uuid))
        : await loadMap(dir, rev);
    if (map.size !== rev.size) {
      throw new BackyError(
        'REVISION_INVALID',
        `revision ${rev.uuid}: map size ${map.size} differs from recorded size ${rev.size}`,
      );
    }
    const reader = readerFor(dir, archive.store, rev, map);
    const close = reader.close.bind(reader);
    reader.close = async () => {
      try {
        await close();
      } finally {
        await lock?.release();
      }
    };
    return reader;
  } catch (error) {
    await lock?.release();
    throw error;
  }
}

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
  for (const rev of [...candidates].reverse()) {
    if (rev.trust === 'distrusted') return null; // the caller rewrites everything after distrust
    if (rev.backend_type !== config.layout) return null;
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
    if (config.layout === 'chunked') {
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

/**
 * A chunk map for a backy 2.0–2.1 raw image, made by hashing the file: those revisions stored no
 * checksums, so what is there now is what they hold. Reads then go through the images layout's reader.
 */
async function legacyImageMap(path: string): Promise<ChunkMap> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw ioError(error, `opening backy 2.x image ${path}`);
  }
  try {
    const size = (await handle.stat()).size;
    const map = new ChunkMap(size);
    for (let index = 0; index < map.chunkCount; index++) {
      const length = map.chunkLength(index);
      const buffer = chunkBuffers.acquire(length);
      try {
        const { bytesRead } = await handle.read(buffer, 0, length, index * map.chunkSize);
        if (bytesRead !== length) throw new BackyError('IO', `${path}: short read at chunk ${index}`);
        map.set(index, isAllZero(buffer) ? null : await hashChunk(buffer, map.algorithm));
      } finally {
        chunkBuffers.release(buffer);
      }
    }
    return map;
  } finally {
    await handle.close();
  }
}
