/**
 * The store conformance suite (store-suite.ts), its checks of writing and reading chunks: every codec
 * and size round-trips, a chunk is written once, reads are pooled and checked against the chunk's name.
 */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'vitest';
import { chunkBuffers } from '../buffer-pool.js';
import { CHUNK_HASH, chunkHashHex, sha256Hex } from '../store/chunk-hash.js';
import { CODECS } from '../store/codec.js';
import { logLikeText, MiB } from './helpers.js';
import { chunk, expectBackyError, KINDS, MAX_CHUNK, SIZES, type StoreSuite } from './store-suite-context.js';
import { expect, it } from './vitest.js';

/** Creating a store, and writing chunks to it: every codec, size and kind; once only. */
export function testWrites(suite: StoreSuite): void {
  const { make, ready, storedHashes } = suite;

  it('is created by init, which is idempotent and keeps what is stored', async () => {
    const { store, existsBeforeInit } = await make();
    expect(store.root.length).toBeGreaterThan(0);
    if (!existsBeforeInit) expect(await store.exists()).toBe(false);
    await store.init();
    expect(await store.exists()).toBe(true);
    const { data, hash } = chunk();
    await store.put(hash, data);
    await store.init();
    expect(await store.exists()).toBe(true);
    expect(await store.has(hash)).toBe(true);
    expect((await store.get(hash)).equals(data)).toBe(true);
  });

  it.each(CODECS)(
    'stores chunks of every size and kind and reads them back, with codec %s',
    async (codec) => {
      const { store } = await ready(codec);
      expect(store.codec.name).toBe(codec);
      const stored = new Set<string>(); // one random byte may well equal another kind's
      for (const [kind, make] of Object.entries(KINDS)) {
        for (const size of SIZES) {
          const data = make(size);
          const hash = chunkHashHex(data);
          const what = `${kind}, ${size} bytes`;
          if (stored.has(hash)) continue;
          stored.add(hash);
          expect(await store.has(hash), what).toBe(false);
          const { written } = await store.put(hash, data);
          expect(written, what).toBeGreaterThan(0);
          if (codec === 'none') expect(written, what).toBeGreaterThanOrEqual(size);
          // The codec is used: a chunk of text is stored in far fewer bytes than it holds.
          if (codec !== 'none' && kind === 'compressible' && size === MAX_CHUNK)
            expect(written, what).toBeLessThan(size / 2);
          expect(await store.has(hash), what).toBe(true);
          const back = await store.get(hash);
          expect(back.length, what).toBe(size);
          expect(back.equals(data), what).toBe(true);
        }
      }
    },
  );

  it('shows what one handle stored to another handle on the same store', async (context: TestContext) => {
    const fixture = await ready();
    if (fixture.reopen == null) return context.skip('the fixture has no reopen');
    const { data, hash } = chunk(MAX_CHUNK);
    await fixture.store.put(hash, data);
    await fixture.store.flush();
    const other = await fixture.reopen();
    expect(await other.exists()).toBe(true);
    expect(await other.has(hash)).toBe(true);
    expect((await other.get(hash)).equals(data)).toBe(true);
    expect((await other.put(hash, data)).written).toBe(0);
  });

  it('writes a chunk once: again, or eight times at once, it writes nothing more; rewrite replaces it', async () => {
    const { store } = await ready();
    const text = logLikeText(MiB);
    const hash = chunkHashHex(text);
    const first = await store.put(hash, text);
    expect(first.written).toBeGreaterThan(0);
    expect((await store.put(hash, text)).written).toBe(0);

    const { data, hash: other } = chunk(MAX_CHUNK);
    const results = await Promise.all(Array.from({ length: 8 }, () => store.put(other, data)));
    expect(results.filter((r) => r.written > 0)).toHaveLength(1);
    expect(results.filter((r) => r.written === 0)).toHaveLength(7);
    expect((await store.get(other)).equals(data)).toBe(true);

    const again = await store.put(hash, text, { rewrite: true });
    expect(again.written).toBeGreaterThan(0);
    expect((await store.get(hash)).equals(text)).toBe(true);
    expect(await storedHashes(store)).toEqual([hash, other].sort());
  });
}

/** Reading chunks back: pooled, by older hashes, by the store's naming; which are missing; comparing. */
export function testReads(suite: StoreSuite): void {
  const { ready } = suite;

  it('hands out pooled reads with the same bytes, also past the cache', async () => {
    const { store } = await ready();
    for (const data of [randomBytes(MAX_CHUNK), logLikeText(MAX_CHUNK), randomBytes(4097)]) {
      const hash = chunkHashHex(data);
      await store.put(hash, data);
      for (const bypassCache of [false, true]) {
        const pooled = await store.getPooled(hash, undefined, { bypassCache });
        expect(pooled.equals(data), `bypassCache ${bypassCache}`).toBe(true);
        chunkBuffers.release(pooled);
      }
      const plain = await store.getPooled(hash);
      expect(plain.equals(data)).toBe(true);
      chunkBuffers.release(plain);
      // `get` hands out a copy of its own: later pooled reads cannot overwrite it.
      const copy = await store.get(hash);
      const later = await store.getPooled(hash);
      chunkBuffers.release(later);
      expect(copy.equals(data)).toBe(true);
    }
  });

  it('reads chunks named by SHA-256 (older revisions) when asked for that hash', async () => {
    const { store } = await ready();
    const data = logLikeText(100_000);
    const hash = sha256Hex(data);
    await store.put(hash, data);
    expect((await store.get(hash, 'sha256')).equals(data)).toBe(true);
    const pooled = await store.getPooled(hash, 'sha256', { bypassCache: true });
    expect(pooled.equals(data)).toBe(true);
    chunkBuffers.release(pooled);
  });

  it('names new chunks by its naming (its own keyed hash, or the plain one) and checks reads against it', async () => {
    const { store } = await ready();
    const { naming } = store;
    const name = (data: Buffer) => naming?.name(data) ?? Promise.resolve(chunkHashHex(data));
    const algorithm = naming?.algorithm ?? CHUNK_HASH;
    const data = logLikeText(100_000);
    const hash = await name(data);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    // A store's own naming is not the plain hash: it cannot be computed from known content alone.
    if (naming != null) expect(hash).not.toBe(chunkHashHex(data));
    expect(await name(Buffer.from(data))).toBe(hash);
    await store.put(hash, data);
    expect((await store.get(hash, algorithm)).equals(data)).toBe(true);
    const wrong = await name(logLikeText(1000));
    await store.put(wrong, data);
    await expectBackyError(store.get(wrong, algorithm), 'CHUNK_CORRUPT', wrong);
  });

  it('tells which of many chunks are missing, in batches', async () => {
    const { store } = await ready();
    const all = Array.from({ length: 150 }, () => chunk(200));
    const present = all.filter((_, i) => i % 3 === 0);
    for (const { data, hash } of present) await store.put(hash, data);
    const absent = all.filter((_, i) => i % 3 !== 0).map((c) => c.hash);
    // Any iterable, not only arrays.
    const missing = await store.missing(new Set(all.map((c) => c.hash)));
    expect([...missing].sort()).toEqual([...absent].sort());
    expect(await store.missing(present.map((c) => c.hash))).toEqual([]);
    expect(await store.missing([])).toEqual([]);
  });

  it.each(CODECS)('compares a stored chunk with bytes, with codec %s', async (codec) => {
    const { store } = await ready(codec);
    for (const data of [logLikeText(MiB + 3), randomBytes(MiB + 3)]) {
      const hash = chunkHashHex(data);
      await store.put(hash, data);
      expect(await store.equals(hash, data)).toBe(true);
      expect(await store.equals(hash, Buffer.from(data))).toBe(true);
      const changed = Buffer.from(data);
      changed[changed.length >> 1]! ^= 1;
      expect(await store.equals(hash, changed)).toBe(false);
      expect(await store.equals(hash, data.subarray(0, data.length - 1))).toBe(false);
      expect(await store.equals(hash, Buffer.concat([data, Buffer.from('x')]))).toBe(false);
      expect(await store.equals(hash, randomBytes(data.length))).toBe(false);
    }
    const absent = chunk();
    await expectBackyError(store.equals(absent.hash, absent.data), 'CHUNK_MISSING', absent.hash);
  });
}
