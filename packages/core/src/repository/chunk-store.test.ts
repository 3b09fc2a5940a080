import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chunkBuffers } from '../buffer-pool.js';
import { isBackyError } from '../errors.js';
import { chunkHashHex, isAllZero, sha256Hex } from '../store/chunk-hash.js';
import { ChunkMap } from '../store/chunk-map.js';
import { tempDir } from '../testing/helpers.js';
import { DirectoryChunkStore } from './chunk-store.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

const text = Buffer.from('a compressible line of a log file\n'.repeat(130_000));

describe('chunk store', () => {
  it.each(['zstd', 'deflate', 'none'] as const)(
    'stores, dedupes and verifies chunks with %s',
    async (codec) => {
      const store = new DirectoryChunkStore(join(dir.path, 'chunks'), { codec });
      await store.init();
      const hash = chunkHashHex(text);
      const first = await store.put(hash, text);
      expect(first.written).toBeGreaterThan(0);
      if (codec !== 'none') expect(first.written).toBeLessThan(text.length / 4);
      expect((await store.put(hash, text)).written).toBe(0);
      expect((await store.get(hash)).equals(text)).toBe(true);
      expect((await stat(store.pathOf(hash))).isFile()).toBe(true);
      expect(store.pathOf(hash)).toContain(`/chunks/${hash.slice(0, 2)}/${hash}`);
    },
  );

  it('stores incompressible chunks raw', async () => {
    const store = new DirectoryChunkStore(join(dir.path, 'chunks'));
    await store.init();
    const random = randomBytes(4 * 1024 * 1024);
    const { written } = await store.put(chunkHashHex(random), random);
    expect(written).toBe(random.length + 12);
  });

  it('detects damaged and missing chunks on read', async () => {
    const store = new DirectoryChunkStore(join(dir.path, 'chunks'));
    await store.init();
    const hash = chunkHashHex(text);
    await store.put(hash, text);
    const file = await readFile(store.pathOf(hash));
    file[file.length - 10]! ^= 0xff;
    await writeFile(store.pathOf(hash), file);
    const damaged = await store.get(hash).catch((e) => e);
    expect(isBackyError(damaged, 'CHUNK_CORRUPT')).toBe(true);
    expect(damaged.message).toContain(hash);
    const missing = await store.get(`${'0'.repeat(63)}1`).catch((e) => e);
    expect(isBackyError(missing, 'CHUNK_MISSING')).toBe(true);
  });

  it('rewrites an existing chunk when asked (healing after distrust)', async () => {
    const store = new DirectoryChunkStore(join(dir.path, 'chunks'));
    await store.init();
    const hash = chunkHashHex(text);
    await store.put(hash, text);
    await writeFile(store.pathOf(hash), 'garbage');
    expect((await store.put(hash, text)).written).toBe(0);
    expect((await store.put(hash, text, { rewrite: true })).written).toBeGreaterThan(0);
    expect((await store.get(hash)).equals(text)).toBe(true);
  });

  it('keeps a registry of archives and leaves no temp files', async () => {
    const store = new DirectoryChunkStore(join(dir.path, 'chunks'));
    await store.init();
    await store.register('AAAAAAAAAAAAAAAAAAAAAA', join(dir.path, 'a'));
    await store.register('BBBBBBBBBBBBBBBBBBBBBB', join(dir.path, 'b'));
    await store.register('AAAAAAAAAAAAAAAAAAAAAA', join(dir.path, 'a'));
    // The same archive moved: a second entry until purge sees it live at the new path.
    await store.register('AAAAAAAAAAAAAAAAAAAAAA', join(dir.path, 'a2'));
    expect((await store.registeredArchives()).map((e) => [e.id, e.path])).toEqual([
      ['AAAAAAAAAAAAAAAAAAAAAA', join(dir.path, 'a')],
      ['AAAAAAAAAAAAAAAAAAAAAA', join(dir.path, 'a2')],
      ['BBBBBBBBBBBBBBBBBBBBBB', join(dir.path, 'b')],
    ]);
    await store.put(chunkHashHex(text), text);
    const fan = await readdir(join(dir.path, 'chunks', chunkHashHex(text).slice(0, 2)));
    expect(fan).toEqual([chunkHashHex(text)]);
  });
});

it('reads chunks named by SHA-256 (older revisions) only when asked for that hash', async () => {
  const store = new DirectoryChunkStore(join(dir.path, 'chunks'));
  await store.init();
  const old = sha256Hex(text);
  await store.put(old, text);
  expect((await store.get(old, 'sha256')).equals(text)).toBe(true);
  await expect(store.get(old)).rejects.toThrow(/does not match its hash/);
});

it('writes chunk files past the page cache, and reads them back that way on request', async () => {
  const store = new DirectoryChunkStore(join(dir.path, 'chunks'));
  await store.init();
  const resident = (path: string) =>
    Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path]).toString());
  const noise = randomBytes(4 * 1024 * 1024); // stored raw
  const words = Buffer.from('direct io '.repeat(419_431)).subarray(0, 4 * 1024 * 1024); // zstd
  for (const data of [noise, words]) {
    const hash = chunkHashHex(data);
    await store.put(hash, data);
    const path = store.pathOf(hash);
    const size = (await stat(path)).size;
    expect(size % 4096).not.toBe(0); // cut back to its length after the padded direct write
    expect(resident(path)).toBe(0);
    const back = await store.getPooled(hash, undefined, { bypassCache: true });
    expect(back.equals(data)).toBe(true);
    expect(chunkBuffers.isDirectIoAligned(back)).toBe(true); // ready for a direct write to a target
    chunkBuffers.release(back);
    expect(resident(path)).toBe(0);
    expect((await store.get(hash)).equals(data)).toBe(true); // and the usual way
  }
});

describe('chunk map', () => {
  it('round-trips and detects damage', () => {
    const map = new ChunkMap(10 * 1024 * 1024 + 5);
    expect(map.chunkCount).toBe(3);
    expect(map.chunkLength(2)).toBe(2 * 1024 * 1024 + 5);
    map.set(1, chunkHashHex(text));
    const copy = ChunkMap.deserialize(map.serialize());
    expect(copy.get(0)).toBeNull();
    expect(copy.get(1)).toBe(chunkHashHex(text));
    expect(copy.size).toBe(map.size);
    const bytes = map.serialize();
    bytes[40]! ^= 1;
    expect(() => ChunkMap.deserialize(bytes)).toThrowError(/damaged/);
    expect(() => ChunkMap.deserialize(Buffer.from('nope'))).toThrowError(/not a backy chunk map/);
  });

  it('records which hash names its chunks: BLAKE3 now, SHA-256 for maps of format 1', () => {
    const map = new ChunkMap(4 * 1024 * 1024);
    expect(map.algorithm).toBe('blake3');
    expect(map.serialize().subarray(0, 8).toString()).toBe('BKYMAP02');
    const old = new ChunkMap(4 * 1024 * 1024, undefined, undefined, 'sha256');
    old.set(0, sha256Hex(text));
    const bytes = old.serialize();
    expect(bytes.subarray(0, 8).toString()).toBe('BKYMAP01');
    const back = ChunkMap.deserialize(bytes);
    expect(back.algorithm).toBe('sha256');
    expect(back.clone().algorithm).toBe('sha256');
    expect(back.get(0)).toBe(sha256Hex(text));
  });

  it('resizes keeping existing entries', () => {
    const map = new ChunkMap(8 * 1024 * 1024);
    map.set(1, chunkHashHex(text));
    map.resize(20 * 1024 * 1024);
    expect(map.chunkCount).toBe(5);
    expect(map.get(1)).toBe(chunkHashHex(text));
    map.resize(1);
    expect(map.chunkCount).toBe(1);
  });

  it('recognises zero data', () => {
    expect(isAllZero(Buffer.alloc(9 * 1024 * 1024))).toBe(true);
    const b = Buffer.alloc(9 * 1024 * 1024);
    b[b.length - 1] = 1;
    expect(isAllZero(b)).toBe(false);
  });
});
