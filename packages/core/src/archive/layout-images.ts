// The `images` layout: a revision is the raw image file `<id>` and its `.map` of hashes (layout/images.ts).
import { BackyError } from '../errors.js';
import { ImagesRevisionReader, ImagesRevisionWriter, supportsReflink } from '../layout/images.js';
import { CHUNK_HASH } from '../store/chunk-hash.js';
import { ChunkMap } from '../store/chunk-map.js';
import type { ConfigLayout } from './layout.js';
import { checkedSize, loadMap } from './maps.js';
import { configPath, imagePath } from './paths.js';

export const imagesLayout: ConfigLayout = {
  name: 'images',
  title: 'images',
  legacy: false,
  imageFile: true,
  chunkStore: false,
  mapFile: true,

  // Image files are never purged: no store lock.
  async openReader(archive, rev) {
    return imagesLayout.reader(archive, rev.uuid, checkedSize(rev, await loadMap(archive.path, rev)));
  },

  reader(archive, id, map) {
    return new ImagesRevisionReader(imagePath(archive.path, id), map);
  },

  // Each image file holds its own copy of a chunk: each is read.
  verifyKey: (id, hash) => `${id}/${hash}`,

  openWriter(archive, id, parent, options) {
    const { path } = archive;
    return ImagesRevisionWriter.create(imagePath(path, id), {
      parentMap: parent?.map ?? null,
      parentImage: parent != null ? imagePath(path, parent.revision.uuid) : null,
      logger: options.logger,
    });
  },

  // Only a 2.0–2.1 image becomes this layout's image as it is: a map of it is all that is written.
  async convert(archive, rev, from, legacy, onBytes) {
    // The other backy 2.x layout, 2.2–2.5's, has chunk files, no image.
    if (!from.imageFile) {
      throw new BackyError(
        'USAGE',
        `upgrade: revision ${rev.uuid} is in backy 2.2–2.5's chunked format, which converts into layout "chunked" only; set layout: chunked in ${configPath(archive.path)}`,
      );
    }
    // The 2.x reader hashed the image when it was opened: its hashes are the map, no second pass.
    if (legacy.hashAlgorithm !== CHUNK_HASH) throw new Error(`unexpected hash ${legacy.hashAlgorithm}`);
    const map = new ChunkMap(legacy.size, legacy.chunkSize);
    for (let i = 0; i < map.chunkCount; i++) map.set(i, legacy.chunkHash(i));
    onBytes(map.size);
    return { map, newReader: imagesLayout.reader(archive, rev.uuid, map) };
  },

  async warnings(dir) {
    if (await supportsReflink(dir)) return [];
    return [
      `the file system of ${dir} cannot reflink (copy-on-write clones): with layout "images" every revision is a full (sparse) copy of the image; use btrfs or XFS with reflink=1 to store only changed blocks`,
    ];
  },
};
