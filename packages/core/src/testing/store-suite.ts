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
 *
 * The checks are declared by group, each in a function of its own (store-suite-*.ts), in this order.
 */
import { testReads, testWrites } from './store-suite-chunks.js';
import { storeSuite, type TestChunkStoreOptions } from './store-suite-context.js';
import { testDamage, testPurge } from './store-suite-damage.js';
import { testCatalog, testLocks, testRegistration } from './store-suite-locks.js';
import { describe } from './vitest.js';

export type { ChunkStoreFixture, TestChunkStoreOptions } from './store-suite-context.js';

export function testChunkStore(options: TestChunkStoreOptions): void {
  const { name } = options;
  const suite = options.skip ? describe.skip : describe;
  if (options.skip) console.warn(`[store conformance ${name}] skipped: ${options.skip}`);

  suite(`store conformance: ${name}`, () => {
    const context = storeSuite(options);
    testWrites(context);
    testReads(context);
    testDamage(context);
    testPurge(context);
    testLocks(context);
    testRegistration(context);
    testCatalog(context);
  });
}
