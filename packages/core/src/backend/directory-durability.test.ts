import { dirname } from 'node:path';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { Repository } from '../repository/repository.js';
import { hashChunk } from '../store/chunk-hash.js';
import { tempDir } from '../testing/helpers.js';
import { DirectoryBackend } from './directory.js';

// Which directories `flush` makes durable. An fsync cannot be observed from outside (the data only
// vanishes when the machine loses power), so the real fsyncDir runs and the test records its calls.
const synced = vi.hoisted(() => [] as string[]);
vi.mock('../fs-util.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../fs-util.js')>();
  return {
    ...real,
    fsyncDir: async (dir: string) => {
      synced.push(dir);
      return real.fsyncDir(dir);
    },
  };
});

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeEach(async () => {
  dir = await tempDir('backy-durable-');
  synced.length = 0;
});
afterEach(() => dir.cleanup());

/** The directories the next `flush` of `backend` fsyncs, relative to the root ('' for the root). */
async function flushed(backend: DirectoryBackend): Promise<string[]> {
  synced.length = 0;
  await backend.flush();
  return synced.map((d) => d.slice(dir.path.length + 1)).sort();
}

it('fsyncs the root when a fan directory is new, so that the directory itself survives a crash', async () => {
  const backend = new DirectoryBackend(dir.path);
  await backend.init();
  expect(await backend.saveOnce('cd/c1', Buffer.from('x'))).not.toBeNull();
  expect(await flushed(backend)).toEqual(['', 'cd']);
  // Known since: only the fan directory, as before.
  expect(await backend.saveOnce('cd/c2', Buffer.from('y'))).not.toBeNull();
  expect(await flushed(backend)).toEqual(['cd']);
});

it('fsyncs the directory of an object another writer created: the caller commits a revision naming it', async () => {
  const other = new DirectoryBackend(dir.path);
  await other.saveOnce('ab/shared', Buffer.from('x'));
  // The other writer has not flushed (it may still be in flight): our flush must cover its object.
  const backend = new DirectoryBackend(dir.path);
  expect(await backend.saveOnce('ab/shared', Buffer.from('x'))).toBeNull();
  expect(await flushed(backend)).toEqual(['', 'ab']);
});

it('fsyncs the directory when another writer wins the link race for the same object', async () => {
  const other = new DirectoryBackend(dir.path);
  await other.saveOnce('ab/raced', Buffer.from('x'));
  const backend = new DirectoryBackend(dir.path);
  await backend.init();
  await backend.saveOnce('ab/known', Buffer.from('k'));
  await backend.flush();
  // Absent when this writer looked, there when it links: the other writer came in between.
  const look = vi.spyOn(backend, 'stat').mockResolvedValueOnce(null);
  expect(await backend.saveOnce('ab/raced', Buffer.from('x'))).toBeNull();
  look.mockRestore();
  expect(await flushed(backend)).toEqual(['ab']);
});

it('fsyncs the directory of a chunk the repository found by stat: another backup may not have flushed it', async () => {
  const other = new Repository(new DirectoryBackend(dir.path), { codec: 'zstd' });
  await other.init();
  const data = Buffer.alloc(8192, 'shared chunk');
  const hash = await hashChunk(data);
  expect((await other.put(hash, data)).written).toBeGreaterThan(0);
  // The other backup has not flushed: this one reuses the chunk and then commits a map naming it.
  const backend = new DirectoryBackend(dir.path);
  const store = new Repository(backend, { codec: 'zstd' });
  expect((await store.put(hash, data)).written).toBe(0);
  const fan = dirname(backend.pathOf(`${hash.slice(0, 2)}/${hash}`)).slice(dir.path.length + 1);
  expect(await flushed(backend)).toContain(fan);
});
