import { encryptedDirectoryStoreFixture } from '../testing/fixtures/encrypted-store.js';
import { testChunkStore } from '../testing/store-suite.js';

// The directory store below the encryption layer; tamper flips a byte of the sealed object.
testChunkStore({ name: 'encrypted directory', makeStore: (options) => encryptedDirectoryStoreFixture(options) });
