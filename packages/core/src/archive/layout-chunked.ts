// The `chunked` layout: a revision is its `.map` over the archive's chunk store (store/).
import { ChunkedRevisionReader, ChunkedRevisionWriter } from '../layout/chunked.js';
import type { RevisionReader } from '../revision-io.js';
import type { ConfigLayout } from './layout.js';
import { checkedSize, loadMap } from './maps.js';

export const chunkedLayout: ConfigLayout = {
  name: 'chunked',
  title: 'chunked',
  legacy: false,
  imageFile: false,
  chunkStore: true,
  mapFile: true,

  async openReader(archive, rev) {
    // Only chunks in the store can be purged: the lock keeps purge from a chunk this reader may read.
    const lock = await archive.store.lock('shared');
    try {
      const reader = chunkedLayout.reader(
        archive,
        rev.uuid,
        checkedSize(rev, await loadMap(archive.path, rev)),
      );
      return releasingOnClose(reader, () => lock.release());
    } catch (error) {
      await lock.release();
      throw error;
    }
  },

  reader(archive, _id, map) {
    return new ChunkedRevisionReader(archive.store, map);
  },

  verifyKey: (_id, hash) => hash,

  async openWriter(archive, _id, parent, options) {
    return new ChunkedRevisionWriter(archive.store, {
      parentMap: parent?.map ?? null,
      rewrite: options.rewrite ?? false,
    });
  },

  async convert(archive, _rev, _from, legacy, onBytes) {
    const writer = new ChunkedRevisionWriter(archive.store);
    try {
      await writer.resize(legacy.size);
      for (let i = 0; i < legacy.chunkCount; i++) {
        if (legacy.isZero(i)) writer.zero(i);
        else await writer.write(i, await legacy.read(i));
        onBytes(legacy.chunkLength(i));
      }
      const map = await writer.seal();
      return { map, newReader: new ChunkedRevisionReader(archive.store, map) };
    } catch (error) {
      await writer.abort().catch(() => {});
      throw error;
    }
  },

  async warnings() {
    return [];
  },
};

/** `reader`, whose `close` also runs `release` (a lock's), whatever closing the reader did. */
function releasingOnClose(reader: RevisionReader, release: () => Promise<void>): RevisionReader {
  const close = reader.close.bind(reader);
  reader.close = async () => {
    try {
      await close();
    } finally {
      await release();
    }
  };
  return reader;
}
