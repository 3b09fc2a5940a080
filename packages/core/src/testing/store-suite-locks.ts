/**
 * The store conformance suite (store-suite.ts), its checks of the purge lock that keeps backups and purge
 * apart, of the archives registered with a store, and of the revision catalog of stores that keep one.
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'vitest';
import { newRevisionId } from '../ids.js';
import { expectBackyError, PROMPT_MS, type StoreSuite } from './store-suite-context.js';
import { describe, expect, it } from './vitest.js';

/** The store's lock: exclusive, shared, and waiting for a busy one. */
export function testLocks(suite: StoreSuite): void {
  const { ready, twoHandles, take, expectBusy, releasedLater } = suite;

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
}

/** The archives registered with the store, and whether it keeps revisions of its own. */
export function testRegistration(suite: StoreSuite): void {
  const { ready, options } = suite;

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
}

/** The revision catalog of a store that keeps the revisions: files, the archive's claim, one writer. */
export function testCatalog(suite: StoreSuite): void {
  const { ready, releasedLater, options } = suite;

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
}
