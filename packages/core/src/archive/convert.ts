// `upgrade`'s write step: a backy 2.x revision's data in the configured layout.
import type { RevisionData } from '../revision.js';
import type { RevisionReader } from '../revision-io.js';
import type { ChunkMap } from '../store/chunk-map.js';
import { layoutFor, layoutOf } from './layouts.js';
import { saveMap } from './maps.js';
import type { ArchiveParts } from './paths.js';

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
  const into = layoutFor(archive.config.layout);
  const converted = await into.convert(archive, rev, layoutOf(rev), legacy, onBytes);
  try {
    await saveMap(archive.path, rev.uuid, converted.map);
  } catch (error) {
    await converted.newReader.close().catch(() => {});
    throw error;
  }
  return converted;
}
