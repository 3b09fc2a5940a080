// `pnpm bench`: backy against a durable copy (cp + sync) of the same VM-like image (4 GiB; `--quick` or
// `--size 1G` for 1 GiB), alternating, several runs, medians. Prints ratios; asserts nothing (speed is
// measured, not tested).
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeVmImage } from '@backy/core/testing/helpers';
import { parse, stringify } from 'yaml';
import { benchSize, changeOnePercent, copyDurably, diskUsage, GiB, mb, median, timed } from './measure.js';
import { REPO } from './paths.js';
import { WARM_BYTES } from './warm-memory.js';

const dir = process.env.BENCH_DIR ?? join(REPO, '.bench');
const SIZE = benchSize(process.argv.slice(2), 4 * GiB);
const RUNS = Number(process.env.BENCH_RUNS ?? (SIZE > 2 * GiB ? 3 : 5));
const wrapper = fileURLToPath(new URL('./rss-wrapper.js', import.meta.url));
const rssFile = join(dir, 'rss');

type Step = 'full' | 'incr' | 'incrChanged' | 'restore' | 'verify';

async function backy(...args: string[]): Promise<{ seconds: number; rss: number }> {
  await rm(rssFile, { force: true });
  const seconds = timed(process.execPath, [wrapper, ...args], { BACKY_RSS_FILE: rssFile });
  const rss = Number((await readFile(rssFile, 'utf8')).trim());
  return { seconds, rss };
}

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
const image = join(dir, 'vm.img');
console.log(
  `backy benchmark: ${(SIZE / 1024 ** 3).toFixed(2)} GiB VM-like image, ${RUNS} runs each, medians`,
);
await writeVmImage(image, SIZE);
const results: Record<Step | 'copy', number[]> = {
  copy: [],
  full: [],
  incr: [],
  incrChanged: [],
  restore: [],
  verify: [],
};
const rss: Record<Step, number[]> = { full: [], incr: [], incrChanged: [], restore: [], verify: [] };
/** Sets the file source's `verify:` in the archive's config. */
async function setVerify(archive: string, mode: string): Promise<void> {
  const path = join(archive, 'config');
  const config = parse(await readFile(path, 'utf8'));
  config.source.verify = mode;
  await writeFile(path, stringify(config));
}
for (let run = 0; run < RUNS; run++) {
  const copy = join(dir, 'copy.img');
  await rm(copy, { force: true });
  results.copy.push(copyDurably(image, copy));
  await rm(copy, { force: true });

  const archive = join(dir, `archive-${run}`);
  spawnSync(process.execPath, [wrapper, '-b', archive, 'init', 'file', image]);
  const full = await backy('-b', archive, 'backup', 'daily');
  results.full.push(full.seconds);
  rss.full.push(full.rss);

  results.copy.push(copyDurably(image, copy));
  await rm(copy, { force: true });
  await changeOnePercent(image, SIZE);
  const incr = await backy('-b', archive, 'backup', 'daily');
  results.incr.push(incr.seconds);
  rss.incr.push(incr.rss);

  await changeOnePercent(image, SIZE);
  await setVerify(archive, 'changed');
  const incrChanged = await backy('-b', archive, 'backup', 'daily');
  results.incrChanged.push(incrChanged.seconds);
  rss.incrChanged.push(incrChanged.rss);
  await setVerify(archive, 'written');

  results.copy.push(copyDurably(image, copy));
  await rm(copy, { force: true });
  const target = join(dir, 'restored.img');
  await rm(target, { force: true });
  const restore = await backy('-b', archive, 'restore', target);
  results.restore.push(restore.seconds);
  rss.restore.push(restore.rss);
  await rm(target, { force: true });

  const verify = await backy('-b', archive, 'verify', '-r', 'last');
  results.verify.push(verify.seconds);
  rss.verify.push(verify.rss);
  const used = diskUsage(join(archive, 'chunks'));
  if (run === 0)
    console.log(
      `archive chunk store after 3 revisions: ${mb(used)} for ${mb(3 * (await stat(image)).size)} of images`,
    );
  await rm(archive, { recursive: true, force: true });
}
const base = median(results.copy);
const runs = (key: Step | 'copy') => `runs: ${results[key].map((x) => x.toFixed(2)).join(', ')}`;
const row = (name: string, key: Step, target: string) => {
  const m = median(results[key]);
  console.log(
    `${name.padEnd(22)} ${m.toFixed(2).padStart(6)} s   ${(m / base).toFixed(2)}× baseline (target ${target})   peak RSS ${mb(median(rss[key]))}   (${runs(key)})`,
  );
};
console.log(`${'baseline cp + sync'.padEnd(22)} ${base.toFixed(2).padStart(6)} s   (${runs('copy')})`);
row('full backup', 'full', '≤ 1.3×');
row('incremental (1%)', 'incr', '≤ 0.5×');
row('  verify: changed', 'incrChanged', '≤ 0.4×');
row('restore', 'restore', '≤ 1.0×');
const v = median(results.verify);
console.log(
  `${'verify'.padEnd(22)} ${v.toFixed(2).padStart(6)} s   ${(SIZE / v / 1e9).toFixed(2)} GB/s of image (target ≥ 1 GB/s)   peak RSS ${mb(median(rss.verify))}   (${runs('verify')})`,
);
console.log(
  WARM_BYTES > 0
    ? `(memory warmed before every timed step: ${(WARM_BYTES / 1024 ** 3).toFixed(1)} GiB touched and freed; see warmMemory)`
    : '(memory not warmed: steps that allocate page cache may pay for memory the VM handed back to its host)',
);
await rm(dir, { recursive: true, force: true });
