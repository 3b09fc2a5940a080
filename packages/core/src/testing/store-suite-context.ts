/**
 * What the store conformance suite (store-suite.ts) shares between its groups of checks: the fixture a
 * driver hands it, the test data, and the context each group is given (fixtures cleaned up after every
 * test, locks released, assertions on errors and locks).
 */
import { randomBytes } from 'node:crypto';
import { type BackyErrorCode, isBackyError } from '../errors.js';
import type { Lock, LockMode } from '../lock.js';
import { chunkHashHex } from '../store/chunk-hash.js';
import type { CodecName } from '../store/codec.js';
import type { ChunkStore, StoreEntry } from '../store/contract.js';
import { logLikeText, MiB } from './helpers.js';
import { afterEach, expect } from './vitest.js';

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
export const MAX_CHUNK = 4 * MiB;
/**
 * Chunk sizes: tiny, around the 4 KiB direct I/O alignment, not a power of two, the largest. No empty
 * chunk: backy never stores one (an image is cut into chunks of 1 byte or more, and a zero-sized image
 * has none); an all-zero chunk is never stored either (the map records it as a hole).
 */
export const SIZES = [1, 4095, 4097, 65_539, MAX_CHUNK];
export const KINDS: Record<string, (size: number) => Buffer> = {
  random: (size) => randomBytes(size),
  compressible: (size) => logLikeText(size),
  'all the same byte': (size) => Buffer.alloc(size, 0x5a),
};
/** How long "at once" may take for a busy lock (a process spawn or a request or two on a loaded host). */
export const PROMPT_MS = 3000;

/** A chunk of `size` random bytes and its name. */
export function chunk(size = 1000): { data: Buffer; hash: string } {
  const data = randomBytes(size);
  return { data, hash: chunkHashHex(data) };
}

/** The BackyError `promise` rejects with (fails the test if it resolves or rejects with something else). */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, 'expected a rejection').toBeInstanceOf(Error);
  return error as Error & { code?: string };
}

export async function expectBackyError(promise: Promise<unknown>, code: BackyErrorCode, mentions?: string) {
  const error = await rejection(promise);
  expect(isBackyError(error, code), `${code} expected, got ${error.code}: ${error.message}`).toBe(true);
  if (mentions != null) expect(error.message).toContain(mentions);
  return error;
}

/** What each group of checks is given: fixtures and locks that are cleaned up after every test. */
export interface StoreSuite {
  options: TestChunkStoreOptions;
  /** A new fixture, cleaned up after the test. */
  make(codec?: CodecName): Promise<ChunkStoreFixture>;
  /** A new, initialised store. */
  ready(codec?: CodecName): Promise<ChunkStoreFixture>;
  /** Two handles on one store: the second from `reopen`, or the same one. */
  twoHandles(fixture: ChunkStoreFixture): Promise<[ChunkStore, ChunkStore][]>;
  /** `lock`, released after the test unless the test did (the contract does not promise twice is harmless). */
  releasedLater(lock: Lock): Lock;
  /** Takes a lock that must be free. */
  take(store: ChunkStore, mode: LockMode): Promise<Lock>;
  /** A lock that must be busy: LOCKED, at once with no wait, with a message. */
  expectBusy(store: ChunkStore, mode: LockMode): Promise<void>;
  entriesOf(store: ChunkStore): Promise<StoreEntry[]>;
  /** The hashes of the chunks stored (quarantined ones left out), sorted. */
  storedHashes(store: ChunkStore): Promise<string[]>;
}

/** The context of one suite; registers the clean-up after each of its tests, so call it inside the suite. */
export function storeSuite(options: TestChunkStoreOptions): StoreSuite {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    const pending = cleanups.splice(0);
    for (const cleanup of pending.reverse()) await cleanup();
  });

  const make = async (codec: CodecName = 'zstd'): Promise<ChunkStoreFixture> => {
    const fixture = await options.makeStore({ codec });
    cleanups.push(() => fixture.cleanup());
    return fixture;
  };
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
  const entriesOf = async (store: ChunkStore) => {
    const out = [];
    for await (const entry of store.entries()) out.push(entry);
    return out;
  };
  return {
    options,
    make,
    async ready(codec: CodecName = 'zstd') {
      const fixture = await make(codec);
      await fixture.store.init();
      return fixture;
    },
    async twoHandles(fixture) {
      const pairs: [ChunkStore, ChunkStore][] = [[fixture.store, fixture.store]];
      if (fixture.reopen != null) pairs.push([fixture.store, await fixture.reopen()]);
      return pairs;
    },
    releasedLater,
    async take(store, mode) {
      const lock = releasedLater(await store.lock(mode));
      expect(lock.mode).toBe(mode);
      return lock;
    },
    async expectBusy(store, mode) {
      const started = Date.now();
      const error = await expectBackyError(store.lock(mode, 0), 'LOCKED');
      expect(Date.now() - started).toBeLessThan(PROMPT_MS);
      expect(error.message.length).toBeGreaterThan(0);
    },
    entriesOf,
    storedHashes: async (store) =>
      (await entriesOf(store))
        .map((e) => e.hash)
        .filter((h): h is string => h != null)
        .sort(),
  };
}
