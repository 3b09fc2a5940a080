// The two conformance suites a backend runs: the backend contract on its own, and the chunk store that
// backy's repository makes of it (plain and encrypted), with revisions, leases and marker kept in it.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Repository, type RepositoryOptions } from '@backy/core/store';
import {
  type ChunkStoreFixture,
  encryptedStoreFixture,
  tempDir,
  testBackend,
  testChunkStore,
} from '@backy/core/testing';
import { FlatDirectoryBackend } from './index.js';

testBackend({
  name: 'flat directory',
  async makeBackend() {
    const dir = await tempDir('backy-store-example-');
    return {
      backend: new FlatDirectoryBackend(join(dir.path, 'objects')),
      reopen: async () => new FlatDirectoryBackend(join(dir.path, 'objects')),
      cleanup: dir.cleanup,
    };
  },
});

type StoreOptions = RepositoryOptions;

async function storeFixture(options: StoreOptions): Promise<ChunkStoreFixture> {
  const dir = await tempDir('backy-store-example-');
  const open = () => new Repository(new FlatDirectoryBackend(dir.path), options);
  const file = (hash: string) => join(dir.path, encodeURIComponent(`chunks/${hash.slice(0, 2)}/${hash}`));
  return {
    store: open(),
    reopen: async () => open(),
    cleanup: dir.cleanup,
    async tamper(hash) {
      const bytes = await readFile(file(hash));
      bytes[bytes.length >> 1]! ^= 0xff;
      await writeFile(file(hash), bytes);
    },
    remove: (hash) => new FlatDirectoryBackend(dir.path).remove(`chunks/${hash.slice(0, 2)}/${hash}`),
  };
}

testChunkStore({ name: 'flat directory', catalog: true, makeStore: (options) => storeFixture(options) });
testChunkStore({
  name: 'flat directory, encrypted',
  catalog: true,
  makeStore: (options) => encryptedStoreFixture(options, (keyed) => storeFixture(keyed)),
});
