/**
 * The conformance suite every backend runs against its real medium (unstorage's `testDriver`):
 *
 *   testBackend({ name, makeBackend: async () => ({ backend, cleanup, reopen }) });
 *
 * It holds a backend to the byte-level contract of backend/contract.ts: objects round-trip whole at
 * every size a chunk file has, `saveOnce` creates only, `save` replaces (conditionally on the version),
 * `load` reads ranges and pooled buffers, `list` yields by prefix in name order, `remove`,
 * `removeVersion` and `move` do what they say. The store above it (`testChunkStore`) is then the repository's business.
 */
import { randomBytes } from 'node:crypto';
import type { Backend } from '../backend/contract.js';
import { chunkBuffers } from '../buffer-pool.js';
import { afterEach, describe, expect, it } from './vitest.js';

export interface BackendFixture {
  /** The backend, on a place of its own, not yet initialised. */
  backend: Backend;
  /** Removes the place and everything in it. */
  cleanup(): Promise<void>;
  /** Another handle on the same place, as a second process or host would open it. */
  reopen?(): Promise<Backend>;
}

export interface TestBackendOptions {
  name: string;
  makeBackend(): Promise<BackendFixture>;
  /** When set, the suite is skipped and this reason is printed. */
  skip?: string | null;
}

/** Sizes: tiny, around the 4 KiB direct I/O alignment, a chunk file's largest (header plus 4 MiB). */
const SIZES = [1, 4095, 4097, 4 * 1024 * 1024 + 12];

async function names(backend: Backend, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const item of backend.list(prefix)) out.push(item.name);
  return out;
}

export function testBackend(options: TestBackendOptions): void {
  const suite = options.skip ? describe.skip : describe;
  if (options.skip) console.warn(`[backend conformance ${options.name}] skipped: ${options.skip}`);

  suite(`backend conformance: ${options.name}`, () => {
    let fixture: BackendFixture | null = null;
    const make = async () => {
      fixture = await options.makeBackend();
      await fixture.backend.init?.();
      return fixture.backend;
    };
    afterEach(async () => {
      await fixture?.cleanup();
      fixture = null;
    });

    it('declares its capabilities and where it is', async () => {
      const backend = await make();
      expect(typeof backend.location).toBe('string');
      expect(backend.location.length).toBeGreaterThan(0);
      const { conditionalWrites, atomicMove, localPath, concurrency } = backend.capabilities;
      expect([true, false, 'one-host']).toContain(conditionalWrites);
      expect(typeof atomicMove).toBe('boolean');
      expect(localPath === null || typeof localPath === 'string').toBe(true);
      expect(concurrency).toBeGreaterThanOrEqual(1);
      await backend.init?.(); // idempotent
    });

    it('saves objects whole at every size and loads them back, plain and pooled', async () => {
      const backend = await make();
      for (const size of SIZES) {
        const data = randomBytes(size);
        const saved = await backend.saveOnce(`ab/object-${size}`, data);
        expect(saved).toMatchObject({ name: `ab/object-${size}`, bytes: size });
        expect((await backend.load(`ab/object-${size}`))?.equals(data)).toBe(true);
        for (const bypassCache of [false, true]) {
          const pooled = await backend.load(`ab/object-${size}`, { pooled: true, bypassCache });
          expect(pooled?.equals(data), `pooled, bypassCache ${bypassCache}`).toBe(true);
          chunkBuffers.release(pooled!);
        }
        expect(await backend.stat(`ab/object-${size}`)).toMatchObject({ bytes: size });
      }
    });

    it('knows nothing of an object that was never saved', async () => {
      const backend = await make();
      expect(await backend.load('no/such-object')).toBeNull();
      expect(await backend.stat('no/such-object')).toBeNull();
      expect(await names(backend, 'no/')).toEqual([]);
      await backend.remove('no/such-object');
      if (backend.move != null) expect(await backend.move('no/such-object', 'no/other')).toBe(false);
    });

    it('creates once: saveOnce of an existing name saves nothing', async () => {
      const backend = await make();
      const first = Buffer.from('first');
      expect(await backend.saveOnce('once', first)).not.toBeNull();
      expect(await backend.saveOnce('once', Buffer.from('second'))).toBeNull();
      expect((await backend.load('once'))?.equals(first)).toBe(true);
    });

    testConditionalWrites(make, () => fixture!);
    testReadsAndLists(make);
    testRemoval(make);

    it('shows what one handle saved to another, after flush', async () => {
      const backend = await make();
      if (fixture!.reopen == null) return;
      await backend.saveOnce('shared/one', Buffer.from('seen'));
      await backend.flush?.();
      const other = await fixture!.reopen();
      expect((await other.load('shared/one'))?.toString()).toBe('seen');
      expect(await names(other, 'shared/')).toEqual(['shared/one']);
    });
  });
}

/** `saveOnce` and `save` with `ifVersion` where the backend has conditional writes, raced over two handles. */
function testConditionalWrites(make: () => Promise<Backend>, fixture: () => BackendFixture): void {
  it('lets exactly one of eight racing saveOnce calls create the object, where it has conditional writes', async () => {
    const backend = await make();
    const other = (await fixture().reopen?.()) ?? backend;
    const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(`writer ${i}`));
    const results = await Promise.all(
      bodies.map((body, i) => (i % 2 === 0 ? backend : other).saveOnce('race', body)),
    );
    const winners = results.flatMap((r, i) => (r == null ? [] : [i]));
    if (backend.capabilities.conditionalWrites) {
      expect(winners).toHaveLength(1);
      expect((await backend.load('race'))?.equals(bodies[winners[0]!]!)).toBe(true);
    } else expect(winners.length).toBeGreaterThanOrEqual(1);
  });

  it('replaces with save, and with ifVersion only over the version it names', async () => {
    const backend = await make();
    const first = (await backend.save('doc', Buffer.from('one')))!;
    expect(first.version).not.toBe('');
    const second = (await backend.save('doc', Buffer.from('two, longer')))!;
    expect((await backend.load('doc'))?.toString()).toBe('two, longer');
    expect(second.version).not.toBe(first.version);
    expect((await backend.stat('doc'))?.version).toBe(second.version);
    if (backend.capabilities.conditionalWrites) {
      expect(await backend.save('doc', Buffer.from('stale'), { ifVersion: first.version })).toBeNull();
      expect((await backend.load('doc'))?.toString()).toBe('two, longer');
    }
    const third = await backend.save('doc', Buffer.from('three'), { ifVersion: second.version });
    expect(third).not.toBeNull();
    expect((await backend.load('doc'))?.toString()).toBe('three');
  });

  it('lets exactly one of eight racing saves over one version replace it, where it has conditional writes', async () => {
    const backend = await make();
    if (!backend.capabilities.conditionalWrites) return;
    const other = (await fixture().reopen?.()) ?? backend;
    const { version } = (await backend.saveOnce('lease', Buffer.from('held')))!;
    const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(`taker ${i}`));
    const results = await Promise.all(
      bodies.map((body, i) => (i % 2 === 0 ? backend : other).save('lease', body, { ifVersion: version })),
    );
    const winners = results.flatMap((r, i) => (r == null ? [] : [i]));
    expect(winners).toHaveLength(1);
    expect((await backend.load('lease'))?.equals(bodies[winners[0]!]!)).toBe(true);
  });
}

/** Ranged loads and listing by prefix. */
function testReadsAndLists(make: () => Promise<Backend>): void {
  it('reads ranges, short at the end', async () => {
    const backend = await make();
    const data = randomBytes(10_000);
    await backend.saveOnce('ranged', data);
    expect(
      (await backend.load('ranged', { range: { offset: 0, length: 10 } }))?.equals(data.subarray(0, 10)),
    ).toBe(true);
    expect(
      (await backend.load('ranged', { range: { offset: 4097, length: 3000 } }))?.equals(
        data.subarray(4097, 7097),
      ),
    ).toBe(true);
    expect(
      (await backend.load('ranged', { range: { offset: 9990, length: 100 } }))?.equals(data.subarray(9990)),
    ).toBe(true);
  });

  it('lists by prefix, nested names included, in name order', async () => {
    const backend = await make();
    const all = ['a/1', 'a/2', 'a/b/3', 'ab/4', 'b/5', 'top'];
    for (const name of [...all].reverse()) await backend.saveOnce(name, Buffer.from(name));
    expect(await names(backend, 'a/')).toEqual(['a/1', 'a/2', 'a/b/3']);
    expect(await names(backend, 'a/b/')).toEqual(['a/b/3']);
    expect(await names(backend, 'ab/')).toEqual(['ab/4']);
    expect((await names(backend, '')).filter((n) => all.includes(n))).toEqual(all);
    const listed = [];
    for await (const item of backend.list('b/')) listed.push(item);
    expect(listed).toEqual([{ name: 'b/5', bytes: 3, version: (await backend.stat('b/5'))!.version }]);
  });
}

/** `remove`, `removeVersion` and `move`, on a backend `make` gives. */
function testRemoval(make: () => Promise<Backend>): void {
  it('removes and moves objects', async () => {
    const backend = await make();
    await backend.saveOnce('x/gone', Buffer.from('x'));
    await backend.remove('x/gone');
    expect(await backend.stat('x/gone')).toBeNull();
    if (backend.move == null) return;
    await backend.saveOnce('x/from', Buffer.from('moving'));
    expect(await backend.move('x/from', 'x/to')).toBe(true);
    expect(await backend.stat('x/from')).toBeNull();
    expect((await backend.load('x/to'))?.toString()).toBe('moving');
  });

  it('removes an object only at the version removeVersion names, where it has removeVersion', async () => {
    const backend = await make();
    if (backend.removeVersion == null) return;
    const first = (await backend.save('held', Buffer.from('mine')))!;
    const second = (await backend.save('held', Buffer.from('taken over')))!;
    expect(await backend.removeVersion('held', first.version)).toBe(false);
    expect((await backend.load('held'))?.toString()).toBe('taken over');
    expect(await backend.removeVersion('held', second.version)).toBe(true);
    expect(await backend.stat('held')).toBeNull();
    expect(await backend.removeVersion('held', second.version)).toBe(false);
  });
}
