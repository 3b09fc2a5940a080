/**
 * The conformance suite every store driver runs against its real backend (unstorage's one contract, one
 * suite): the local directory (`DirectoryChunkStore`) and S3 (`@backy/store-s3`) both pass it.
 *
 *   testChunkStore({ name, catalog: false, makeStore: async ({ codec }) => ({ store, cleanup, tamper, remove, reopen }) });
 *
 * It holds the driver to the `ChunkStore` contract (contract.ts): chunks round-trip for every codec and
 * size, are written once, are verified on every read (a damaged one is moved aside and healed by the next
 * put), are listed and removed for purge, and the purge lock keeps backups and purge apart. Stores with a
 * `RevisionCatalog` also have it checked: revision files, the archive claim and the writer lock.
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'vitest';
import { chunkBuffers } from '../buffer-pool.js';
import { type BackyErrorCode, isBackyError } from '../errors.js';
import { newRevisionId } from '../ids.js';
import type { Lock, LockMode } from '../lock.js';
import { CHUNK_HASH, chunkHashHex, sha256Hex } from '../store/chunk-hash.js';
import { CODECS, type CodecName } from '../store/codec.js';
import type { ChunkStore } from '../store/contract.js';
import { logLikeText, MiB } from './helpers.js';
import { afterEach, describe, expect, it } from './vitest.js';

/** A store made for one test, on a place of its own (a new directory, a new bucket prefix). */
export interface ChunkStoreFixture {
  /** The store, not yet initialised; constructed with the codec asked for. */
  store: ChunkStore;
  /** Removes the store and everything in it. */
  cleanup(): Promise<void>;
  /**
   * Another handle on the same store, as a second process (or host) would open it. Locks are checked
   * between the two handles as well as within one; without it, only within one.
   */
  reopen?(): Promise<ChunkStore>;
  /** Corrupts the stored object of chunk `hash` (flips a byte of its payload); without it, that check is skipped. */
  tamper?(hash: string): Promise<void>;
  /** Deletes the stored object of chunk `hash` behind the store's back; without it, that check is skipped. */
  remove?(hash: string): Promise<void>;
  /**
   * The place is a store before `init` already (e.g. a bucket the test setup made, that `init` only
   * checks), so `exists()` may be true before `init`. Default false: it must be false.
   */
  existsBeforeInit?: boolean;
}

export interface TestChunkStoreOptions {
  /** Names the suite. */
  name: string;
  /** Makes a new, empty store whose new chunks are written with `codec`. */
  makeStore(options: { codec: CodecName }): Promise<ChunkStoreFixture>;
  /**
   * Whether the store keeps the revisions (`store.catalog`, remote stores): then the catalog checks run
   * (and fail if it has none); without, the suite checks that it has none.
   */
  catalog: boolean;
  /** When set, the suite is skipped and this reason is printed. */
  skip?: string | null;
}

/** The largest chunk backy writes. */
const MAX_CHUNK = 4 * MiB;
/**
 * Chunk sizes: tiny, around the 4 KiB direct I/O alignment, not a power of two, the largest. No empty
 * chunk: backy never stores one (an image is cut into chunks of 1 byte or more, and a zero-sized image
 * has none); an all-zero chunk is never stored either (the map records it as a hole).
 */
const SIZES = [1, 4095, 4097, 65_539, MAX_CHUNK];
const KINDS: Record<string, (size: number) => Buffer> = {
  random: (size) => randomBytes(size),
  compressible: (size) => logLikeText(size),
  'all the same byte': (size) => Buffer.alloc(size, 0x5a),
};
/** How long "at once" may take for a busy lock (a process spawn or a request or two on a loaded host). */
const PROMPT_MS = 3000;

/** A chunk of `size` random bytes and its name. */
function chunk(size = 1000): { data: Buffer; hash: string } {
  const data = randomBytes(size);
  return { data, hash: chunkHashHex(data) };
}

/** The BackyError `promise` rejects with (fails the test if it resolves or rejects with something else). */
async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, 'expected a rejection').toBeInstanceOf(Error);
  return error as Error & { code?: string };
}

async function expectBackyError(promise: Promise<unknown>, code: BackyErrorCode, mentions?: string) {
  const error = await rejection(promise);
  expect(isBackyError(error, code), `${code} expected, got ${error.code}: ${error.message}`).toBe(true);
  if (mentions != null) expect(error.message).toContain(mentions);
  return error;
}

export function testChunkStore(options: TestChunkStoreOptions): void {
  const { name } = options;
  const suite = options.skip ? describe.skip : describe;
  if (options.skip) console.warn(`[store conformance ${name}] skipped: ${options.skip}`);

  suite(`store conformance: ${name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      const pending = cleanups.splice(0);
      for (const cleanup of pending.reverse()) await cleanup();
    });

    /** A new fixture, cleaned up after the test. */
    const make = async (codec: CodecName = 'zstd'): Promise<ChunkStoreFixture> => {
      const fixture = await options.makeStore({ codec });
      cleanups.push(() => fixture.cleanup());
      return fixture;
    };
    /** A new, initialised store. */
    const ready = async (codec: CodecName = 'zstd') => {
      const fixture = await make(codec);
      await fixture.store.init();
      return fixture;
    };
    /** Two handles on one store: the second from `reopen`, or the same one. */
    const twoHandles = async (fixture: ChunkStoreFixture): Promise<[ChunkStore, ChunkStore][]> => {
      const pairs: [ChunkStore, ChunkStore][] = [[fixture.store, fixture.store]];
      if (fixture.reopen != null) pairs.push([fixture.store, await fixture.reopen()]);
      return pairs;
    };
    /** `lock`, released after the test unless the test did (the contract does not promise twice is harmless). */
    const releasedLater = (lock: Lock): Lock => {
      let released = false;
      const release = async () => {
        if (released) return;
        released = true;
        await lock.release();
      };
      cleanups.push(release);
      return { path: lock.path, mode: lock.mode, release };
    };
    /** Takes a lock that must be free. */
    const take = async (store: ChunkStore, mode: LockMode): Promise<Lock> => {
      const lock = releasedLater(await store.lock(mode));
      expect(lock.mode).toBe(mode);
      return lock;
    };
    /** A lock that must be busy: LOCKED, at once with no wait, with a message. */
    const expectBusy = async (store: ChunkStore, mode: LockMode) => {
      const started = Date.now();
      const error = await expectBackyError(store.lock(mode, 0), 'LOCKED');
      expect(Date.now() - started).toBeLessThan(PROMPT_MS);
      expect(error.message.length).toBeGreaterThan(0);
    };
    const entriesOf = async (store: ChunkStore) => {
      const out = [];
      for await (const entry of store.entries()) out.push(entry);
      return out;
    };
    const storedHashes = async (store: ChunkStore) =>
      (await entriesOf(store))
        .map((e) => e.hash)
        .filter((h): h is string => h != null)
        .sort();

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

    it('lets one exclusive lock in at a time, and refuses the next at once', async () => {
      const fixture = await ready();
      for (const [a, b] of await twoHandles(fixture)) {
        const held = await take(a, 'exclusive');
        await expectBusy(b, 'exclusive');
        await expectBusy(a, 'exclusive');
        await held.release();
        const next = await take(b, 'exclusive');
        await expectBusy(a, 'exclusive');
        await next.release();
      }
    });

    it('lets shared locks in together, and keeps exclusive and shared apart', async () => {
      const fixture = await ready();
      for (const [a, b] of await twoHandles(fixture)) {
        const one = await take(a, 'shared');
        const two = await take(b, 'shared');
        await expectBusy(b, 'exclusive');
        await one.release();
        await expectBusy(a, 'exclusive'); // one shared lock is still held
        await two.release();
        const exclusive = await take(a, 'exclusive');
        await expectBusy(b, 'shared');
        await expectBusy(a, 'shared');
        await exclusive.release();
        await (await take(b, 'shared')).release();
      }
    });

    it('waits for a busy lock up to waitSeconds', async () => {
      const fixture = await ready();
      for (const [a, b] of await twoHandles(fixture)) {
        const held = await take(a, 'exclusive');
        let started = Date.now();
        await expectBackyError(b.lock('shared', 1), 'LOCKED');
        expect(Date.now() - started).toBeGreaterThanOrEqual(900);
        started = Date.now();
        const releasing = new Promise((resolve) => setTimeout(resolve, 500)).then(() => held.release());
        const lock = releasedLater(await b.lock('exclusive', 20));
        await releasing;
        const waited = Date.now() - started;
        expect(waited).toBeGreaterThanOrEqual(450);
        expect(waited).toBeLessThan(15_000);
        expect(lock.mode).toBe('exclusive');
        await expectBusy(a, 'shared');
        await lock.release();
      }
    });

    it('registers the archives that use it (a store with a catalog may keep none)', async () => {
      const { store } = await ready();
      const id = newRevisionId();
      const path = join(tmpdir(), 'backy-store-conformance', id);
      await store.register(id, path);
      await store.register(id, path);
      const entries = await store.registeredArchives();
      if (store.catalog == null) {
        expect(entries.map((e) => [e.id, e.path])).toEqual([[id, path]]);
        await store.unregisterEntry(entries[0]!.entry);
        expect(await store.registeredArchives()).toEqual([]);
      } else {
        expect(entries.every((e) => e.id === id && e.path === path)).toBe(true);
        expect(entries.length).toBeLessThanOrEqual(1);
        for (const entry of entries) await store.unregisterEntry(entry.entry);
        expect(await store.registeredArchives()).toEqual([]);
      }
    });

    if (!options.catalog) {
      it('keeps no revisions of its own: the archive directory does (catalog null)', async () => {
        expect((await ready()).store.catalog).toBeNull();
      });
    }

    // Defined only for stores that keep the revisions, so no check is skipped for the others.
    if (options.catalog)
      describe('revision catalog (stores that keep the revisions)', () => {
        /** An initialised store with its catalog. */
        const withCatalog = async (_context: TestContext) => {
          const fixture = await ready();
          const catalog = fixture.store.catalog;
          expect(
            catalog,
            'the store has no catalog, but the suite was told it keeps the revisions',
          ).not.toBeNull();
          return { fixture, catalog: catalog! };
        };

        it('writes, reads, lists and deletes revision files', async (context: TestContext) => {
          const { catalog } = await withCatalog(context);
          const id = newRevisionId();
          expect(await catalog.read(id, 'rev')).toBeNull();
          expect(await catalog.read(id, 'map')).toBeNull();
          const map = randomBytes(70_000);
          const rev = Buffer.from(`uuid: ${id}\ntags: [daily]\n`);
          expect(typeof (await catalog.write(id, 'map', map))).toBe('string');
          // A revision exists once its .rev does.
          expect((await catalog.list()).has(id)).toBe(false);
          const version = await catalog.write(id, 'rev', rev);
          expect((await catalog.read(id, 'map'))?.equals(map)).toBe(true);
          expect((await catalog.read(id, 'rev'))?.equals(rev)).toBe(true);
          expect([...(await catalog.list())]).toEqual([[id, version]]);

          const changed = Buffer.from(`uuid: ${id}\ntags: [daily, weekly]\n`);
          const newer = await catalog.write(id, 'rev', changed);
          expect(newer).not.toBe(version);
          expect((await catalog.list()).get(id)).toBe(newer);
          expect((await catalog.read(id, 'rev'))?.equals(changed)).toBe(true);

          const second = newRevisionId();
          await catalog.write(second, 'map', Buffer.from('m'));
          await catalog.write(second, 'rev', Buffer.from('r'));
          expect([...(await catalog.list()).keys()].sort()).toEqual([id, second].sort());

          await catalog.delete(id);
          expect(await catalog.read(id, 'rev')).toBeNull();
          expect(await catalog.read(id, 'map')).toBeNull();
          expect([...(await catalog.list()).keys()]).toEqual([second]);
          await catalog.delete(newRevisionId()); // not there: nothing to do
          expect((await catalog.read(second, 'map'))?.toString()).toBe('m');
        });

        it('belongs to the archive that claimed it', async (context: TestContext) => {
          const { fixture, catalog } = await withCatalog(context);
          expect(await catalog.archiveId()).toBeNull();
          const id = newRevisionId();
          await catalog.claim(id);
          expect(await catalog.archiveId()).toBe(id);
          await catalog.claim(id);
          await expectBackyError(catalog.claim(newRevisionId()), 'CONFIG_INVALID');
          expect(await catalog.archiveId()).toBe(id);
          const other = (await fixture.reopen?.())?.catalog;
          if (other != null) {
            expect(await other.archiveId()).toBe(id);
            await expectBackyError(other.claim(newRevisionId()), 'CONFIG_INVALID');
          }
        });

        it('has one writer at a time', async (context: TestContext) => {
          const { fixture, catalog } = await withCatalog(context);
          const others = [catalog];
          const reopened = (await fixture.reopen?.())?.catalog;
          if (reopened != null) others.push(reopened);
          for (const other of others) {
            const held = releasedLater(await catalog.lockWriter());
            const started = Date.now();
            const error = await expectBackyError(other.lockWriter(), 'LOCKED');
            expect(Date.now() - started).toBeLessThan(PROMPT_MS);
            expect(error.message.length).toBeGreaterThan(0);
            await held.release();
            const next = releasedLater(await other.lockWriter());
            await expectBackyError(catalog.lockWriter(), 'LOCKED');
            await next.release();
          }
        });
      });
  });
}
