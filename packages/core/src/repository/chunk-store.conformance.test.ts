import { directoryStoreFixture } from '../testing/directory-store.js';
import { testChunkStore } from '../testing/store-suite.js';

// A new directory per test; tamper flips a byte in the middle of the chunk file, remove unlinks it.
testChunkStore({ name: 'directory', catalog: false, makeStore: (options) => directoryStoreFixture(options) });
