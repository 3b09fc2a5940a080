/**
 * The store conformance suite must fail a store that breaks the contract. Stores with one defect each
 * (broken-stores.ts) run in a vitest of their own; each must fail exactly the checks that name
 * its defect, and a correct one (with a catalog, so those checks run too) must pass everything.
 */
import { expect, it } from 'vitest';
import { runSuites } from './run-suite.js';

it('fails each broken store on the checks for its defect, and passes a correct one', async () => {
  const { failed, status, stderr } = await runSuites('broken-stores.ts', 'store conformance: ');
  expect(failed, stderr).not.toBeNull();
  expect(failed).toEqual({
    none: [],
    // (Reading through another handle puts the chunk once more, which must write nothing.)
    'rewrites-always': [
      'shows what one handle stored to another handle on the same store',
      'writes a chunk once: again, or eight times at once, it writes nothing more; rewrite replaces it',
    ],
    'no-quarantine': [
      'checks every read against the name: a chunk stored under a wrong name is corrupt and moved aside',
      'finds a tampered chunk corrupt, moves it aside, and takes it anew',
      'lists exactly the stored chunks and quarantined ones for purge, which removes them',
    ],
    'missing-first-batch': ['tells which of many chunks are missing, in batches'],
    'lock-noop': [
      'lets one exclusive lock in at a time, and refuses the next at once',
      'lets shared locks in together, and keeps exclusive and shared apart',
      'waits for a busy lock up to waitSeconds',
      'has one writer at a time',
    ],
    'catalog-lax': [
      'writes, reads, lists and deletes revision files',
      'belongs to the archive that claimed it',
    ],
  });
  expect(status).not.toBe(0);
}, 300_000);
