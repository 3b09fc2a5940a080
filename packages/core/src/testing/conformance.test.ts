/**
 * The conformance suite must fail a source that breaks the contract. Sources with one defect each
 * (fixtures/broken-sources.ts) run in a vitest of their own; each must fail exactly the check that
 * names its defect, and a correct one must pass everything.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const vitestBin = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');

interface JsonReport {
  testResults: { assertionResults: { ancestorTitles: string[]; title: string; status: string }[] }[];
}

it('fails each broken source on the check for its defect, and passes a correct one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'backy-broken-sources-'));
  try {
    const config = join(dir, 'vitest.config.mjs');
    await writeFile(
      config,
      `export default { resolve: { conditions: ['source'] }, ssr: { resolve: { conditions: ['source'] } },
        test: { root: ${JSON.stringify(here)}, include: ['fixtures/broken-sources.ts'], testTimeout: 60000 } };\n`,
    );
    const output = join(dir, 'report.json');
    const run = spawnSync(
      process.execPath,
      [vitestBin, 'run', '--config', config, '--reporter=json', `--outputFile=${output}`],
      { cwd: here, encoding: 'utf8', timeout: 300_000 },
    );
    const report = JSON.parse(
      await readFile(output, 'utf8').catch(() => `{"error": ${JSON.stringify(run.stderr)}}`),
    ) as JsonReport;
    expect(report.testResults, run.stderr).toBeDefined();
    const failed = new Map<string, string[]>();
    for (const result of report.testResults)
      for (const test of result.assertionResults) {
        const suite = test.ancestorTitles.at(-1)!.replace('source conformance: ', '');
        if (!failed.has(suite)) failed.set(suite, []);
        if (test.status !== 'passed') failed.get(suite)!.push(test.title);
      }
    expect(Object.fromEntries(failed)).toEqual({
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
    expect(run.status).not.toBe(0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 300_000);
