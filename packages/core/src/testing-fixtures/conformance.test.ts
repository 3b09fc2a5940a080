/**
 * The conformance suite must fail a source that breaks the contract. Sources with one defect each
 * (broken-sources.ts) run in a vitest of their own; each must fail exactly the check that
 * names its defect, and a correct one must pass everything.
 */
import { expect, it } from 'vitest';
import { runSuites } from './run-suite.js';

it('fails each broken source on the check for its defect, and passes a correct one', async () => {
  const { failed, status, stderr } = await runSuites('broken-sources.ts', 'source conformance: ');
  expect(failed, stderr).not.toBeNull();
  expect(failed).toEqual({
    none: [],
    'verify-always-ok': ['verifies a fresh revision against the source and distrusts one that differs'],
    // (The incremental check builds on the full backup's, so it fails with it.)
    'no-report-read': expect.arrayContaining([
      'makes a full backup that restores byte for byte, reports what it read and is verified',
      'verifies a fresh revision against the source and distrusts one that differs',
    ]),
    'ignores-abort': ['stops a running backup soon after the abort signal'],
    'whole-mib-only': expect.arrayContaining([
      'makes a full backup that restores byte for byte, reports what it read and is verified',
      'follows the image when it grows and shrinks, to sizes that end inside a chunk',
    ]),
    'any-options': [
      'has a definition the CLI can load, whose options schema accepts the fixture and rejects nonsense',
    ],
  });
  expect(status).not.toBe(0);
}, 300_000);
