// `upgrade`'s write step: a backy 2.x revision's data in the configured layout.
import { BackyError } from '../errors.js';
import { ChunkedRevisionReader, ChunkedRevisionWriter } from '../layout/chunked.js';
import { ImagesRevisionReader } from '../layout/images.js';
import type { RevisionData } from '../revision.js';
import type { RevisionReader } from '../revision-io.js';
import { CHUNK_HASH } from '../store/chunk-hash.js';
import { ChunkMap } from '../store/chunk-map.js';
import { type ArchiveParts, configPath, imagePath, mapPath } from './paths.js';

/**
 * Writes a backy 2.x revision's data in the configured layout (for `upgrade`): into the chunk store
 * with a new `.map`, or, for a 2.0–2.1 image kept as the `images` layout's image, just a `.map`.
 * Nothing is committed: the caller compares `newReader` with the 2.x data, then rewrites the `.rev`.
 */
export async function convertLegacy(
  archive: ArchiveParts,
  rev: RevisionData,
  legacy: RevisionReader,
  onBytes: (bytes: number) => void,
): Promise<{ map: ChunkMap; newReader: RevisionReader }> {
  const { path, store } = archive;
  if (archive.config.layout === 'images') {
    if (rev.backend_type !== 'cowfile') {
      throw new BackyError(
        'USAGE',
        `upgrade: revision ${rev.uuid} is in backy 2.2–2.5's chunked format, which converts into layout "chunked" only; set layout: chunked in ${configPath(path)}`,
      );
    }
    // The 2.x reader hashed the image when it was opened: its hashes are the map, no second pass.
    if (legacy.hashAlgorithm !== CHUNK_HASH) throw new Error(`unexpected hash ${legacy.hashAlgorithm}`);
    const map = new ChunkMap(legacy.size, legacy.chunkSize);
    for (let i = 0; i < map.chunkCount; i++) map.set(i, legacy.chunkHash(i));
    await map.save(mapPath(path, rev.uuid));
    onBytes(map.size);
    return { map, newReader: new ImagesRevisionReader(imagePath(path, rev.uuid), map) };
  }
  const writer = new ChunkedRevisionWriter(store, mapPath(path, rev.uuid));
  try {
    await writer.resize(legacy.size);
    for (let i = 0; i < legacy.chunkCount; i++) {
      if (legacy.isZero(i)) writer.zero(i);
      else await writer.write(i, await legacy.read(i));
      onBytes(legacy.chunkLength(i));
    }
    const map = await writer.seal();
    return { map, newReader: new ChunkedRevisionReader(store, map) };
  } catch (error) {
    await writer.abort().catch(() => {});
    throw error;
  }
}
