// Memory is constant in the image size (issue 30): the peak RSS of a backup, a restore and a verify of a
// 2 GiB image may exceed that of a 256 MiB image by at most 25%. Memory, unlike time, is stable from run
// to run, so this is a test and not a benchmark; `pnpm bench:memory` prints the figures at 1-16 GiB.
// Before the fixes of issue 30 the same backup grew with the compressible data (1 GiB of text: 1.8 GB).
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB, writeSparseImage } from '@backy/core/testing/helpers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backy, tempDir } from './helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
let preload: string;
beforeAll(async () => {
  dir = await tempDir();
  // The process's own peak RSS (main thread and chunk workers alike), written as it exits.
  preload = join(dir.path, 'peak-rss.mjs');
  await writeFile(
    preload,
    "import { appendFileSync } from 'node:fs';\n" +
      "process.on('exit', () => appendFileSync(process.env.BACKY_TEST_RSS_FILE, String(process.resourceUsage().maxRSS * 1024) + '\\n'));\n",
  );
});
afterAll(() => dir.cleanup());

type Op = 'backup' | 'restore' | 'verify';

async function peaks(size: number): Promise<Record<Op, number>> {
  const image = join(dir.path, `image-${size}`);
  const archive = join(dir.path, `archive-${size}`);
  const restored = join(dir.path, `restored-${size}`);
  const rssFile = join(dir.path, `rss-${size}`);
  await writeSparseImage(image, size);
  const run = async (args: string[]): Promise<number> => {
    await rm(rssFile, { force: true });
    const r = backy(['-q', '-b', archive, ...args], {
      env: { NODE_OPTIONS: `--import ${preload}`, BACKY_TEST_RSS_FILE: rssFile },
    });
    expect(r.code, `backy ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return Number((await readFile(rssFile, 'utf8')).trim().split('\n').at(-1));
  };
  expect(backy(['-b', archive, 'init', 'file', image]).code).toBe(0);
  const result = {
    backup: await run(['backup', 'daily']),
    restore: await run(['restore', '-r', 'last', restored]),
    verify: await run(['verify', '-r', 'all']),
  };
  await rm(restored, { force: true });
  await rm(image, { force: true });
  await rm(archive, { recursive: true, force: true });
  return result;
}

describe('memory is constant in the image size', () => {
  it('peak RSS of backup, restore and verify grows by at most 25% from 256 MiB to 2 GiB', async () => {
    const small = await peaks(256 * MiB);
    const large = await peaks(2048 * MiB);
    const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
    const table = (['backup', 'restore', 'verify'] as const).map(
      (op) =>
        `${op} ${mb(small[op])} -> ${mb(large[op])} (${((large[op] / small[op] - 1) * 100).toFixed(0)}%)`,
    );
    console.log(`peak RSS, 256 MiB -> 2 GiB: ${table.join(', ')}`);
    for (const op of ['backup', 'restore', 'verify'] as const) {
      expect(small[op], `${op}: no peak RSS measured`).toBeGreaterThan(10 * 1e6);
      expect(large[op] / small[op], `${op}: ${table.join(', ')}`).toBeLessThanOrEqual(1.25);
    }
  }, 600_000);
});
