import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as zstd from 'zstd-napi';
import { BufferPool, chunkBuffers } from './buffer-pool.js';
import { sha256Hex } from './chunk-map.js';
import { ChunkWorkers } from './chunk-workers.js';

describe('chunk workers', () => {
  const workers = new ChunkWorkers(2);

  it('hash plain and shared buffers like the main thread does, many at once', async () => {
    const inputs: Buffer[] = Array.from({ length: 12 }, (_, i) => randomBytes(1024 * 1024 + i));
    const shared = chunkBuffers.acquire(4096);
    shared.fill(7);
    inputs.push(shared);
    const hashes = await Promise.all(inputs.map((b) => workers.digest(b)));
    expect(hashes).toEqual(inputs.map((b) => sha256Hex(b)));
    chunkBuffers.release(shared);
  });

  it('compress with zstd and decompress with the hash of the result', async () => {
    const text = Buffer.from('a line of a log file\n'.repeat(50_000));
    const packed = await workers.compress(text, 1);
    expect(packed.length).toBeLessThan(text.length / 10);
    expect(zstd.decompress(packed).equals(text)).toBe(true);
    const { data, hash } = await workers.decompress(packed);
    expect(data.equals(text)).toBe(true);
    expect(hash).toBe(sha256Hex(text));
  });

  it('report a corrupt stream as an error, not a crash', async () => {
    await expect(workers.decompress(Buffer.from('not zstd at all'))).rejects.toThrow();
    expect(await workers.digest(Buffer.from('still working'))).toBe(sha256Hex(Buffer.from('still working')));
  });
});

describe('buffer pool', () => {
  it('recycles its own shared buffers and ignores others', () => {
    const pool = new BufferPool(1024, 2);
    const a = pool.acquire(100);
    expect(a.length).toBe(100);
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    pool.release(a);
    const b = pool.acquire(1024);
    expect(b.buffer).toBe(a.buffer);
    pool.release(Buffer.alloc(10)); // not ours: ignored
    const big = pool.acquire(4096);
    expect(big.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    pool.release(b);
    pool.release(b); // a second release must not put it back twice
    expect(pool.acquire(10).buffer).toBe(a.buffer);
    expect(pool.acquire(10).buffer).not.toBe(a.buffer);
  });
});
