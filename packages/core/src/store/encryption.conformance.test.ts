import { encryptedDirectoryStoreFixture } from '../testing/encrypted-store.js';
import { testChunkStore } from '../testing/store-suite.js';

// The directory store with the encryption step; tamper flips a byte of the sealed object.
testChunkStore({
  name: 'encrypted directory',
  catalog: false,
  makeStore: (options) => encryptedDirectoryStoreFixture(options),
});
