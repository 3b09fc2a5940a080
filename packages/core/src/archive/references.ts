// What the archives using a store reference, for `purge`: which registered archive directories are
// live, and every chunk map they (or a remote store's catalog) hold. Read without opening the archives.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { BackyError, ioError } from '../errors.js';
import { CONFIG_FILE, mapFileName, revisionIdOfMapFile } from '../format/archive-files.js';
import { mayExist } from '../fs-util.js';
import { ChunkMap } from '../store/chunk-map.js';
import type { RevisionCatalog } from '../store/contract.js';
import { readArchiveId } from './identity.js';
import { layoutNamed } from './layouts.js';
import { revPath } from './paths.js';

/** A revision's chunk map, with the revision's ID (a copy of a revision keeps it). */
export interface RevisionMap {
  id: string;
  map: ChunkMap;
}

/** What an archive directory registered with a store holds now. */
export async function archiveAt(
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
 * Every map in the archive directory `dir`: damaged revisions', interrupted backups' and unknown ones'
 * too. One it cannot read throws (REVISION_INVALID), except a map that went with its `.rev` meanwhile.
 */
export async function* mapsOfDirectory(dir: string, logger: Logger): AsyncGenerator<RevisionMap> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    throw ioError(error, `reading archive ${dir}`);
  }
  for (const name of names) {
    const id = revisionIdOfMapFile(name);
    if (id == null) continue;
    try {
      yield { id, map: await ChunkMap.load(join(dir, name)) };
    } catch (error) {
      // Listed a moment ago and gone now, with its `.rev`: the revision was forgotten or expired
      // meanwhile (those take the archive's revisions lock, not the store's, and remove the `.rev`
      // first). Maps are only ever replaced by rename onto the same name, so that map protects
      // nothing any more. A `.rev` still there without its map stops purge like any unreadable map.
      if (
        (error as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT' &&
        !(await mayExist(revPath(dir, id)))
      ) {
        logger.debug({ archive: dir, map: name }, 'revision removed while purge read the archive');
        continue;
      }
      throw new BackyError('REVISION_INVALID', (error as Error).message, { cause: error });
    }
  }
}

/** Every map in a remote store's catalog; one it cannot read (or lacks) throws REVISION_INVALID. */
export async function* mapsOfCatalog(catalog: RevisionCatalog): AsyncGenerator<RevisionMap> {
  for (const id of (await catalog.list()).keys()) {
    const bytes = await catalog.read(id, 'map');
    if (bytes == null) {
      // Forgotten meanwhile (the `.rev` goes first), or a revision that has no map of this store. A
      // chunked revision whose `.rev` is still there without its map is no proof of anything: stop.
      const rev = await catalog.read(id, 'rev');
      if (rev == null || !isChunked(rev)) continue;
      throw new BackyError(
        'REVISION_INVALID',
        `revision ${id} in the store has no map (${mapFileName(id)} is missing)`,
      );
    }
    try {
      yield { id, map: ChunkMap.deserialize(bytes, `${mapFileName(id)} in the store`) };
    } catch (error) {
      throw new BackyError('REVISION_INVALID', (error as Error).message, { cause: error });
    }
  }
}

/** Whether a `.rev`'s bytes describe a revision in the chunk store (the ones with a map in the store). */
function isChunked(rev: Buffer): boolean {
  try {
    const data = parseYaml(rev.toString('utf8')) as { backend_type?: unknown } | null;
    // No `backend_type`: the schema's default, chunked.
    if (data?.backend_type == null) return true;
    return layoutNamed(String(data.backend_type))?.chunkStore === true;
  } catch {
    return true; // unreadable: assume the worst
  }
}
