// backy 2.x's layouts, read in place until `upgrade` converts them: 2.0–2.1's `cowfile` (the raw image
// `<id>`, no map) and 2.2–2.5's chunked backend (`<id>` a JSON chunk mapping over `chunks/`, see
// legacy/chunked.ts). Purge never touches their data, so readers take no store lock.
import { type FileHandle, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { chunkBuffers } from '../buffer-pool.js';
import { BackyError, ioError } from '../errors.js';
import { ImagesRevisionReader } from '../layout/images.js';
import { LegacyChunkedReader, readLegacyMapping } from '../legacy/chunked.js';
import { hashChunk, isAllZero } from '../store/chunk-hash.js';
import { ChunkMap } from '../store/chunk-map.js';
import type { Layout } from './layout.js';
import { checkedSize } from './maps.js';
import { imagePath } from './paths.js';

/** The directory of backy 2.2–2.5's chunk files in an archive. */
export function legacyChunksDir(dir: string): string {
  return join(dir, 'chunks');
}

export const backy2ImageLayout: Layout = {
  name: 'cowfile',
  title: 'backy 2.0-2.1 image',
  legacy: true,
  imageFile: true,
  chunkStore: false,
  mapFile: false,

  async openReader(archive, rev) {
    const path = imagePath(archive.path, rev.uuid);
    return new ImagesRevisionReader(path, checkedSize(rev, await legacyImageMap(path)));
  },

  // Its map is hashed from the file when it is opened: a hash read once is not read again.
  verifyKey: (_id, hash) => hash,

  async dataSize(dir, id) {
    const path = imagePath(dir, id);
    const image = await stat(path).catch(() => null);
    if (image?.isFile()) return image.size;
    return { problem: `a backy 2.x revision without its image file ${path}`, missing: image == null };
  },
};

export const backy2ChunkedLayout: Layout = {
  name: 'legacy-chunked',
  title: 'backy 2.2-2.5 chunks',
  legacy: true,
  imageFile: false,
  chunkStore: false,
  mapFile: false,

  async openReader(archive, rev) {
    const dir = archive.path;
    return new LegacyChunkedReader(legacyChunksDir(dir), await readLegacyMapping(imagePath(dir, rev.uuid)));
  },

  verifyKey: (_id, hash) => hash,

  async dataSize(dir, id) {
    const mapping = await readLegacyMapping(imagePath(dir, id)).catch((error: Error) => error);
    if (!(mapping instanceof Error)) return mapping.size;
    return {
      problem: `a backy 2.x revision whose mapping cannot be read: ${mapping.message}`,
      missing: true,
    };
  },

  async legacyChunks(dir, id) {
    return (await readLegacyMapping(imagePath(dir, id))).mapping.values();
  },
};

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
