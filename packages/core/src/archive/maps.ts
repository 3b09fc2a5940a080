// The `.map` files of an archive directory: the one module that writes them (format: ChunkMap's, see
// format/archive-files.ts MAP_SUFFIX), and reads them checked against their revision's `.rev`.
import { BackyError, ioError } from '../errors.js';
import { writeFileAtomic } from '../fs-util.js';
import type { RevisionData } from '../revision.js';
import { ChunkMap } from '../store/chunk-map.js';
import { mapPath } from './paths.js';

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

/** Writes revision `id`'s map, atomically (the new revision's, before its `.rev`); sets its checksum. */
export async function saveMap(dir: string, id: string, map: ChunkMap): Promise<void> {
  const path = mapPath(dir, id);
  await map.save(path).catch((error) => {
    throw ioError(error, `writing ${path}`);
  });
}

/** Writes revision `id`'s map as a remote store's catalog holds it (the caller syncs the directory). */
export async function saveMapBytes(dir: string, id: string, bytes: Buffer): Promise<void> {
  await writeFileAtomic(mapPath(dir, id), bytes, { mode: 0o640, syncDir: false });
}

/** `map`, checked to be as long as the revision `rev` records. */
export function checkedSize(rev: Pick<RevisionData, 'uuid' | 'size'>, map: ChunkMap): ChunkMap {
  if (map.size !== rev.size) {
    throw new BackyError(
      'REVISION_INVALID',
      `revision ${rev.uuid}: map size ${map.size} differs from recorded size ${rev.size}`,
    );
  }
  return map;
}
