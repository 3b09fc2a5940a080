import { directoryStoreFixture } from '../testing/fixtures/directory-store.js';
import {
  encryptedDirectoryStoreFixture,
  encryptedStoreFixture,
} from '../testing/fixtures/encrypted-store.js';
import { memoryCatalog } from '../testing/fixtures/memory-catalog.js';
import { testChunkStore } from '../testing/store-suite.js';
import type { ChunkStore, RevisionCatalog } from './contract.js';

// The directory store below the encryption layer; tamper flips a byte of the sealed object.
testChunkStore({
  name: 'encrypted directory',
  catalog: false,
  makeStore: (options) => encryptedDirectoryStoreFixture(options),
});

/** `store` with `catalog` as its catalog, as a remote store has one. */
function withCatalog(store: ChunkStore, catalog: RevisionCatalog): ChunkStore {
  return new Proxy(store, {
    get(target, key) {
      if (key === 'catalog') return catalog;
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

// With a catalog (in memory) below it too, so the catalog checks run through the sealing of revision files.
testChunkStore({
  name: 'encrypted directory with a catalog',
  catalog: true,
  makeStore(options) {
    const catalog = memoryCatalog();
    return encryptedStoreFixture(options, (inner, wrap) =>
      directoryStoreFixture(inner, (store) => wrap(withCatalog(store, catalog))),
    );
  },
});
