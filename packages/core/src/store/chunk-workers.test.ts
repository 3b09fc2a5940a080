import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BufferPool, chunkBuffers } from '../buffer-pool.js';
import { chunkHashHex, sha256Hex } from './chunk-hash.js';
import { ChunkWorkers } from './chunk-workers.js';
import { loadZstd } from './native-modules.js';

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
    expect(loadZstd().decompress(packed.subarray(0, length), text.length).equals(text)).toBe(true);
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
    const packed = loadZstd().compress(text, 3);
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
  it('recycles its slots, ignores foreign buffers and double releases, and stays within its bound', () => {
    const pool = new BufferPool(1000, 2);
    expect(pool.slotBytes).toBe(64 * 1024); // whole WebAssembly pages
    const a = pool.acquire(100);
    expect(a.length).toBe(100);
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    pool.release(a);
    const b = pool.acquire(4096);
    expect(b.byteOffset).toBe(a.byteOffset); // the same slot again
    pool.release(Buffer.alloc(10)); // not ours: ignored
    const c = pool.acquire(4096);
    expect(c.byteOffset).not.toBe(b.byteOffset);
    const beyond = pool.acquire(4096); // both slots taken: a plain shared buffer
    expect(beyond.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(pool.isDirectIoAligned(beyond)).toBe(false);
    const big = pool.acquire(128 * 1024); // larger than a slot: plain too
    expect(pool.isDirectIoAligned(big)).toBe(false);
    pool.release(b);
    pool.release(b); // a second release must not put it back twice
    const d = pool.acquire(10);
    expect(d.byteOffset).toBe(b.byteOffset);
    expect(pool.acquire(10).buffer).not.toBe(d.buffer); // no slot left
    c.fill(1);
    expect(d.every((x) => x !== 1 || d.byteOffset === c.byteOffset)).toBe(true);
  });

  it('hands out slots on aligned addresses for O_DIRECT, and writes them to a file that way', async () => {
    const pool = new BufferPool(8192, 4);
    const slot = pool.acquire(8192);
    expect(pool.isDirectIoAligned(slot)).toBe(true);
    expect(pool.isDirectIoAligned(slot.subarray(12, 12 + 4096))).toBe(false);
    expect(pool.isDirectIoAligned(slot.subarray(0, 100))).toBe(false);
    slot.fill(0xab);
    const path = join(tmpdir(), `backy-direct-${process.pid}`);
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600);
    try {
      await handle.write(slot, 0, 8192, 4096); // EINVAL unless address, offset and length are aligned
    } finally {
      await handle.close();
    }
    const back = await readFile(path);
    await rm(path);
    expect(back.subarray(4096).equals(slot)).toBe(true);
  });
});
