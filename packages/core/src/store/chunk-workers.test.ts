import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as zstd from 'zstd-napi';
import { BufferPool, chunkBuffers } from './buffer-pool.js';
import { chunkHashHex, sha256Hex } from './chunk-map.js';
import { ChunkWorkers } from './chunk-workers.js';

describe('chunk workers', () => {
  const workers = new ChunkWorkers(2);

  it('hash plain and shared buffers like the main thread does, many at once', async () => {
    const inputs: Buffer[] = Array.from({ length: 12 }, (_, i) => randomBytes(1024 * 1024 + i));
    const shared = chunkBuffers.acquire(4096);
    shared.fill(7);
    inputs.push(shared);
    for (const algorithm of ['blake3', 'sha256'] as const) {
      const hashes = await Promise.all(inputs.map((b) => workers.digest(b, algorithm)));
      expect(hashes).toEqual(inputs.map((b) => chunkHashHex(b, algorithm)));
    }
    // Known answers: BLAKE3 and SHA-256 of "abc".
    expect(await workers.digest(Buffer.from('abc'), 'blake3')).toBe(
      '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85',
    );
    expect(await workers.digest(Buffer.from('abc'), 'sha256')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    chunkBuffers.release(shared);
  });

  it('compress with zstd into a pooled buffer, and decompress into one with the hash of the result', async () => {
    const text = Buffer.from('a line of a log file\n'.repeat(50_000));
    const packed = chunkBuffers.acquire(text.length);
    const length = await workers.compressInto(text, packed, 1);
    expect(length).toBeGreaterThan(0);
    expect(length).toBeLessThan(text.length / 10);
    expect(zstd.decompress(packed.subarray(0, length)).equals(text)).toBe(true);
    const out = chunkBuffers.acquire(text.length);
    const result = await workers.decompressInto(packed.subarray(0, length), out, 'blake3');
    expect(result.length).toBe(text.length);
    expect(out.subarray(0, result.length).equals(text)).toBe(true);
    expect(result.hash).toBe(chunkHashHex(text));
    expect((await workers.decompressInto(packed.subarray(0, length), out, 'sha256')).hash).toBe(
      sha256Hex(text),
    );
    chunkBuffers.release(out);
    chunkBuffers.release(packed);
  });

  it('report -1 when the compressed data does not fit, and refuse output outside shared memory', async () => {
    const noise = randomBytes(256 * 1024);
    const room = chunkBuffers.acquire(Math.floor(noise.length * 0.97));
    expect(await workers.compressInto(noise, room, 1)).toBe(-1);
    chunkBuffers.release(room);
    await expect(workers.compressInto(noise, Buffer.alloc(noise.length * 2), 1)).rejects.toThrow(
      /shared memory/,
    );
  });

  it('compare compressed and raw payloads with expected bytes without hashing', async () => {
    const text = Buffer.from('compare me\n'.repeat(10_000));
    const packed = zstd.compress(text);
    expect(await workers.equals(packed, text, false)).toBe(true);
    const changed = Buffer.from(text);
    changed[5000] = (changed[5000] ?? 0) ^ 1;
    expect(await workers.equals(packed, changed, false)).toBe(false);
    expect(await workers.equals(packed, text.subarray(0, text.length - 1), false)).toBe(false);
    expect(await workers.equals(Buffer.from('not zstd'), text, false)).toBe(false);
    expect(await workers.equals(text, text, true)).toBe(true);
    expect(await workers.equals(changed, text, true)).toBe(false);
  });

  it('report a corrupt stream as an error, not a crash', async () => {
    const out = chunkBuffers.acquire(1024);
    await expect(workers.decompressInto(Buffer.from('not zstd at all'), out, 'blake3')).rejects.toThrow();
    chunkBuffers.release(out);
    expect(await workers.digest(Buffer.from('still working'), 'blake3')).toBe(
      chunkHashHex(Buffer.from('still working')),
    );
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
    expect(big.buffer).toBeInstanceOf(SharedArrayBuffer); // shared, but too big to pool
    pool.release(big);
    pool.release(b);
    pool.release(b); // a second release must not put it back twice
    expect(pool.acquire(10).buffer).toBe(a.buffer);
    expect(pool.acquire(10).buffer).not.toBe(a.buffer);
  });
});
