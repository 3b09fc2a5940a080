/**
 * The store conformance suite (store-suite.ts), its checks of chunks that are missing or damaged (moved
 * aside and healed by the next put), and of what purge uses: deleting, listing and removing entries.
 */
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'vitest';
import { isBackyError } from '../errors.js';
import { chunkHashHex, sha256Hex } from '../store/chunk-hash.js';
import { logLikeText, MiB } from './helpers.js';
import { chunk, expectBackyError, MAX_CHUNK, rejection, type StoreSuite } from './store-suite-context.js';
import { expect, it } from './vitest.js';

/** Chunks missing or damaged: named in the error, moved aside, written anew by the next put. */
export function testDamage(suite: StoreSuite): void {
  const { ready } = suite;

  it('reports a chunk that is not there as missing, naming it', async () => {
    const { store } = await ready();
    const { hash } = chunk();
    await expectBackyError(store.get(hash), 'CHUNK_MISSING', hash);
    await expectBackyError(store.getPooled(hash, undefined, { bypassCache: true }), 'CHUNK_MISSING', hash);
  });

  it('reports a chunk deleted behind its back as missing', async (context: TestContext) => {
    const fixture = await ready();
    if (fixture.remove == null) return context.skip('the fixture has no remove');
    const { store } = fixture;
    const { data, hash } = chunk();
    await store.put(hash, data);
    await fixture.remove(hash);
    expect(await store.has(hash)).toBe(false);
    expect(await store.missing([hash])).toEqual([hash]);
    await expectBackyError(store.get(hash), 'CHUNK_MISSING', hash);
    expect((await store.put(hash, data)).written).toBeGreaterThan(0);
    expect((await store.get(hash)).equals(data)).toBe(true);
  });

  it('checks every read against the name: a chunk stored under a wrong name is corrupt and moved aside', async () => {
    const { store } = await ready();
    const right = logLikeText(100_000);
    const hash = chunkHashHex(right);
    const wrong = logLikeText(100_000);
    await store.put(hash, wrong);
    await expectBackyError(store.get(hash), 'CHUNK_CORRUPT', hash);
    // Quarantined: the next backup that meets the content writes it anew.
    expect(await store.has(hash)).toBe(false);
    expect(await store.missing([hash])).toEqual([hash]);
    expect((await store.put(hash, right)).written).toBeGreaterThan(0);
    expect((await store.get(hash)).equals(right)).toBe(true);
    // The same for a chunk named by another hash than the one asked for.
    const old = sha256Hex(right);
    await store.put(old, right);
    await expectBackyError(store.get(old), 'CHUNK_CORRUPT', old);
  });

  it('finds a tampered chunk corrupt, moves it aside, and takes it anew', async (context: TestContext) => {
    const fixture = await ready();
    if (fixture.tamper == null) return context.skip('the fixture has no tamper');
    const { store } = fixture;
    // Stored compressed and stored raw.
    for (const data of [logLikeText(MiB), randomBytes(MiB)]) {
      const hash = chunkHashHex(data);
      await store.put(hash, data);
      await fixture.tamper(hash);
      expect(await store.equals(hash, data)).toBe(false);
      await expectBackyError(store.getPooled(hash), 'CHUNK_CORRUPT', hash);
      expect(await store.has(hash)).toBe(false);
      expect(await store.missing([hash])).toEqual([hash]);
      // Read again before it is healed: still an error (damaged or missing), never data.
      const again = await rejection(store.get(hash));
      expect(isBackyError(again, 'CHUNK_CORRUPT') || isBackyError(again, 'CHUNK_MISSING')).toBe(true);
      expect((await store.put(hash, data)).written).toBeGreaterThan(0);
      expect(await store.has(hash)).toBe(true);
      expect((await store.get(hash)).equals(data)).toBe(true);
    }
  });
}

/** What purge uses: deleting chunks, listing every entry (quarantined ones too), removing them; flush. */
export function testPurge(suite: StoreSuite): void {
  const { ready, entriesOf, storedHashes } = suite;

  it('deletes chunks, and an absent one without complaint', async () => {
    const { store } = await ready();
    const kept = chunk();
    const gone = chunk();
    await store.put(kept.hash, kept.data);
    await store.put(gone.hash, gone.data);
    await store.delete(gone.hash);
    expect(await store.has(gone.hash)).toBe(false);
    await expectBackyError(store.get(gone.hash), 'CHUNK_MISSING', gone.hash);
    await store.delete(gone.hash);
    await store.delete(chunk().hash);
    expect(await store.has(kept.hash)).toBe(true);
    expect(await storedHashes(store)).toEqual([kept.hash]);
  });

  it('lists exactly the stored chunks and quarantined ones for purge, which removes them', async () => {
    const { store } = await ready();
    expect(await storedHashes(store)).toEqual([]);
    const chunks = [chunk(1), chunk(5000), chunk(MAX_CHUNK), { data: logLikeText(MiB), hash: '' }];
    chunks[3]!.hash = chunkHashHex(chunks[3]!.data);
    for (const { data, hash } of chunks) await store.put(hash, data);
    const damaged = chunkHashHex(logLikeText(1000));
    await store.put(damaged, logLikeText(1000));
    await rejection(store.get(damaged)); // quarantined

    const entries = await entriesOf(store);
    expect(await storedHashes(store)).toEqual(chunks.map((c) => c.hash).sort());
    for (const entry of entries) {
      expect(entry.bytes, entry.path).toBeGreaterThan(0);
      expect(entry.path.length).toBeGreaterThan(0);
    }
    const aside = entries.filter((e) => e.damagedOf != null);
    expect(aside.map((e) => [e.hash, e.damagedOf])).toEqual([[null, damaged]]);

    for (const entry of entries.filter((e) => e.hash === chunks[0]!.hash || e.damagedOf != null))
      await store.removeEntry(entry);
    expect(await store.has(chunks[0]!.hash)).toBe(false);
    expect((await entriesOf(store)).filter((e) => e.damagedOf != null)).toEqual([]);
    expect(await storedHashes(store)).toEqual(
      chunks
        .slice(1)
        .map((c) => c.hash)
        .sort(),
    );
    for (const entry of await entriesOf(store)) await store.removeEntry(entry);
    expect(await entriesOf(store)).toEqual([]);
    expect(await store.missing(chunks.map((c) => c.hash))).toHaveLength(chunks.length);
  });

  it('flushes what was put', async () => {
    // Only that flush resolves and the chunks are still there: that they survive a crash (fsync of
    // the files and directories, or an acknowledged PUT) cannot be seen without crashing the host.
    const { store } = await ready();
    await expect(store.flush()).resolves.toBeUndefined();
    const chunks = [chunk(), chunk(MAX_CHUNK), chunk(7)];
    for (const { data, hash } of chunks) await store.put(hash, data);
    await expect(store.flush()).resolves.toBeUndefined();
    await expect(store.flush()).resolves.toBeUndefined();
    expect(await store.missing(chunks.map((c) => c.hash))).toEqual([]);
  });
}
