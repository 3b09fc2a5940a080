import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend } from '../backend/contract.js';
import type { CodecName } from '../store/codec.js';
import type { StoreKey } from '../store/key-file.js';
import { encryptedStoreFixture } from '../testing/encrypted-store.js';
import { tempDir } from '../testing/helpers.js';
import { type ChunkStoreFixture, testChunkStore } from '../testing/store-suite.js';
import { RemoteDirectoryBackend } from '../testing-fixtures/remote-directory.js';
import { Repository } from './repository.js';

/** `backend` with its required members alone: no init, move or flush. */
function onlyRequired(backend: Backend): Backend {
  return {
    location: backend.location,
    capabilities: backend.capabilities,
    saveOnce: (name, data) => backend.saveOnce(name, data),
    save: (name, data, options) => backend.save(name, data, options),
    load: (name, options) => backend.load(name, options),
    stat: (name) => backend.stat(name),
    list: (prefix) => backend.list(prefix),
    remove: (name) => backend.remove(name),
  };
}

// The repository gives a backend without a local directory (as a third party's would be) everything
// the S3 driver had to write itself: codec, encryption, checks, quarantine, leases, catalog, marker.
/** The repository over a backend that keeps revisions and leases itself (a remote one's way), on files. */
async function remoteFixture(
  { codec, key }: { codec: CodecName; key?: StoreKey },
  minimal = false,
): Promise<ChunkStoreFixture> {
  const dir = await tempDir('backy-remote-conformance-');
  const open = () => {
    const files = new RemoteDirectoryBackend(dir.path);
    return new Repository(minimal ? onlyRequired(files) : files, { codec, key });
  };
  const backend = new RemoteDirectoryBackend(dir.path);
  const file = (hash: string) => `chunks/${hash.slice(0, 2)}/${hash}`;
  return {
    store: open(),
    reopen: async () => open(),
    cleanup: dir.cleanup,
    async tamper(hash) {
      const bytes = (await backend.load(file(hash)))!;
      bytes[bytes.length >> 1]! ^= 0xff;
      await backend.save(file(hash), bytes);
    },
    remove: (hash) => unlink(join(dir.path, file(hash))),
  };
}

// Catalog, leases and marker, plain and with the encryption step (revision files sealed).
testChunkStore({
  name: 'remote-style backend',
  catalog: true,
  makeStore: (options) => remoteFixture(options),
});
testChunkStore({
  name: 'encrypted remote-style backend',
  catalog: true,
  makeStore: (options) => encryptedStoreFixture(options, (keyed) => remoteFixture(keyed)),
});
// A backend of the six required methods alone: quarantine by load, save and remove, no flush.
testChunkStore({
  name: 'backend without optional methods',
  catalog: true,
  makeStore: (options) => remoteFixture(options, true),
});
