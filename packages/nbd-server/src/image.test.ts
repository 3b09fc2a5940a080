import type { RevisionReader } from '@backy/core';
import { describe, expect, it } from 'vitest';
import { ChunkCache, ExportImage } from './image.js';

const CS = 1024;

/** An in-memory reader over `chunks` (null = zero chunk) that counts reads per chunk. */
function fakeReader(chunks: (Buffer | null)[]): RevisionReader & { reads: number[] } {
  const reads = chunks.map(() => 0);
  return {
    reads,
    size: chunks.length * CS,
    chunkSize: CS,
    chunkCount: chunks.length,
    hashAlgorithm: 'blake3',
    chunkLength: () => CS,
    isZero: (i) => chunks[i] == null,
    chunkHash: (i) => (chunks[i] == null ? null : `h${i}`),
    async read(i) {
      reads[i]!++;
      await new Promise((r) => setTimeout(r, 5));
      return Buffer.from(chunks[i] ?? Buffer.alloc(CS));
    },
    async close() {},
  };
}

const filled = (n: number) => Buffer.alloc(CS, n);

describe('ChunkCache', () => {
  it('shares one read between concurrent requests and evicts the least recently used chunk', async () => {
    const reader = fakeReader([filled(1), filled(2), filled(3)]);
    const cache = new ChunkCache(reader, 2);
    await Promise.all([cache.get(0), cache.get(0), cache.get(0)]);
    expect(reader.reads).toEqual([1, 0, 0]);
    await cache.get(1);
    await cache.get(0); // 0 is now the most recent
    await cache.get(2); // evicts 1
    await cache.get(0);
    await cache.get(1);
    expect(reader.reads).toEqual([1, 2, 1]);
  });

  it('forgets failed reads so that a retry reads again', async () => {
    let fail = true;
    const reader = fakeReader([filled(1)]);
    const read = reader.read.bind(reader);
    reader.read = async (i) => {
      if (fail) throw new Error('boom');
      return read(i);
    };
    const cache = new ChunkCache(reader, 2);
    await expect(cache.get(0)).rejects.toThrow('boom');
    fail = false;
    expect((await cache.get(0))[0]).toBe(1);
  });
});

describe('ExportImage', () => {
  it('splits reads into data pieces and merged holes', async () => {
    const image = await ExportImage.open(fakeReader([filled(1), null, null, filled(4)]), {
      cacheChunks: 4,
      cow: false,
    });
    const pieces = [];
    for await (const p of image.read(CS - 10, 2 * CS + 20)) pieces.push({ ...p, data: p.data?.[0] ?? null });
    expect(pieces).toEqual([
      { offset: CS - 10, length: 10, data: 1 },
      { offset: CS, length: 2 * CS, data: null },
      { offset: 3 * CS, length: 10, data: 4 },
    ]);
    expect(image.blockStatus(0, 4 * CS, false)).toEqual([
      { length: CS, flags: 0 },
      { length: 2 * CS, flags: 3 },
      { length: CS, flags: 0 },
    ]);
    await expect(image.write(0, Buffer.alloc(1))).rejects.toThrow(/read-only/);
    await image.close();
  });

  it('copy-on-write: serializes concurrent partial writes into one chunk', async () => {
    const reader = fakeReader([filled(7), filled(8)]);
    const image = await ExportImage.open(reader, { cacheChunks: 0, cow: true });
    await Promise.all(Array.from({ length: 16 }, (_, i) => image.write(i * 64, Buffer.alloc(64, 100 + i))));
    const expected = Buffer.alloc(CS, 7);
    for (let i = 0; i < 16; i++) expected.fill(100 + i, i * 64, i * 64 + 64);
    let got = Buffer.alloc(0);
    for await (const p of image.read(0, CS)) got = Buffer.concat([got, p.data ?? Buffer.alloc(p.length)]);
    expect(got.equals(expected)).toBe(true);
    expect(reader.reads[0]).toBe(1); // copied up once
    await image.close();
  });
});
