import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { Backend, LoadOptions, SaveOptions } from '../backend/contract.js';
import { isBackyError } from '../errors.js';
import { hashChunk } from '../store/chunk-hash.js';
import { tempDir } from '../testing/helpers.js';
import { RemoteDirectoryBackend } from '../testing-fixtures/remote-directory.js';
import { Repository } from './repository.js';

// A chunk found damaged may be rewritten correctly by a concurrent backup (a distrusted archive's
// `rewrite`) before it is moved aside: quarantine must not take the good copy away.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/**
 * A store over files with a chunk whose stored object is damaged, and a hook that a test sets to run
 * (once) inside one of the backend's calls, as a concurrent writer would.
 */
async function damagedChunk(withMove: boolean) {
  const dir = await tempDir('backy-quarantine-');
  cleanups.push(dir.cleanup);
  const files = new RemoteDirectoryBackend(dir.path);
  const hooks: { afterLoad?: () => Promise<void>; beforeSave?: (name: string) => Promise<void> } = {};
  const backend: Backend = Object.create(files, {
    load: {
      value: async (name: string, options?: LoadOptions) => {
        const bytes = await files.load(name, options);
        const hook = hooks.afterLoad;
        hooks.afterLoad = undefined;
        await hook?.();
        return bytes;
      },
    },
    save: {
      value: async (name: string, data: Uint8Array, options?: SaveOptions) => {
        const hook = hooks.beforeSave;
        hooks.beforeSave = undefined;
        await hook?.(name);
        return files.save(name, data, options);
      },
    },
    move: { value: withMove ? files.move.bind(files) : undefined },
  });
  const store = new Repository(backend, { codec: 'zstd' });
  await store.init();
  const data = randomBytes(50_000);
  const hash = await hashChunk(data);
  await store.put(hash, data);
  const name = `chunks/${hash.slice(0, 2)}/${hash}`;
  const good = (await files.load(name))!;
  const damaged = Buffer.from(good);
  damaged[damaged.length >> 1]! ^= 0xff;
  await files.save(name, damaged);
  return { store, files, hooks, data, hash, name, rewrite: () => files.save(name, good).then(() => {}) };
}

async function corrupt(promise: Promise<unknown>): Promise<boolean> {
  return promise.then(
    () => false,
    (error: unknown) => isBackyError(error, 'CHUNK_CORRUPT'),
  );
}

describe('quarantine of a chunk rewritten meanwhile', () => {
  for (const withMove of [true, false]) {
    it(`keeps a copy rewritten between the failed read and the quarantine (${withMove ? 'with' : 'without'} move)`, async () => {
      const { store, files, hooks, data, hash, name, rewrite } = await damagedChunk(withMove);
      hooks.afterLoad = rewrite; // the failing read got the damaged bytes; the object is good again now
      expect(await corrupt(store.get(hash))).toBe(true);
      expect((await store.get(hash)).equals(data)).toBe(true);
      expect(await files.stat(`${name}.damaged`)).toBeNull();
    });
  }

  it('keeps a copy rewritten after quarantine checked it, removing only the version found damaged', async () => {
    const { store, files, hooks, data, hash, name, rewrite } = await damagedChunk(false);
    hooks.beforeSave = async (saved) => {
      if (saved === `${name}.damaged`) await rewrite();
    };
    expect(await corrupt(store.get(hash))).toBe(true);
    expect((await store.get(hash)).equals(data)).toBe(true);
    // The damaged copy is kept aside as evidence, as ever.
    expect(await files.stat(`${name}.damaged`)).not.toBeNull();
  });

  it('still moves a chunk that stays damaged aside', async () => {
    const { store, files, hash, name } = await damagedChunk(true);
    expect(await corrupt(store.get(hash))).toBe(true);
    expect(await files.stat(name)).toBeNull();
    expect(await files.stat(`${name}.damaged`)).not.toBeNull();
    expect(await store.has(hash)).toBe(false);
  });
});
