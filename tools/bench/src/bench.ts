// `pnpm bench`: backy against a durable copy (cp + sync) of the same 1 GiB VM-like image, alternating,
// several runs, medians. Prints ratios; asserts nothing (speed is measured, not tested).
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { changeBlocks, writeVmImage } from '@backy/core/testing/helpers';
import { REPO } from './paths.js';
import { WARM_BYTES, warmMemory } from './warm-memory.js';

const dir = process.env.BENCH_DIR ?? join(REPO, '.bench');
const SIZE = Number(process.env.BENCH_SIZE ?? 1024 ** 3);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const wrapper = fileURLToPath(new URL('./rss-wrapper.js', import.meta.url));
const rssFile = join(dir, 'rss');

type Step = 'full' | 'incr' | 'restore' | 'verify';

function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): number {
  // Start every measurement with nothing left to write back from the one before.
  spawnSync('sync');
  warmMemory();
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return seconds;
}
async function backy(...args: string[]): Promise<{ seconds: number; rss: number }> {
  await rm(rssFile, { force: true });
  const seconds = timed(process.execPath, [wrapper, ...args], { BACKY_RSS_FILE: rssFile });
  const rss = Number((await readFile(rssFile, 'utf8')).trim());
  return { seconds, rss };
}
const copyDurably = (from: string, to: string) => timed('sh', ['-c', `cp "${from}" "${to}" && sync "${to}"`]);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
const image = join(dir, 'vm.img');
console.log(
  `backy benchmark: ${(SIZE / 1024 ** 3).toFixed(2)} GiB VM-like image, ${RUNS} runs each, medians`,
);
await writeVmImage(image, SIZE);
const results: Record<Step | 'copy', number[]> = { copy: [], full: [], incr: [], restore: [], verify: [] };
const rss: Record<Step, number[]> = { full: [], incr: [], restore: [], verify: [] };
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
  await changeBlocks(image, SIZE, Math.max(1, Math.round(SIZE / (4 * 1024 * 1024) / 100)));
  const incr = await backy('-b', archive, 'backup', 'daily');
  results.incr.push(incr.seconds);
  rss.incr.push(incr.rss);

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
  const used = Number(
    spawnSync('du', ['-sb', join(archive, 'chunks')])
      .stdout.toString()
      .split('\t')[0],
  );
  if (run === 0)
    console.log(
      `archive chunk store after 2 revisions: ${mb(used)} for ${mb(2 * (await stat(image)).size)} of images`,
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
row('full backup', 'full', '≤ 1.25×');
row('incremental (1%)', 'incr', '≤ 0.4×');
row('restore', 'restore', '≤ 1.25×');
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
