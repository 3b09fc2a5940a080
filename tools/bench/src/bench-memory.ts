// `pnpm bench:memory [--sizes 1G,4G,16G] [--baseline REV]`: peak RSS of backup, incremental, restore,
// verify and copy at several image sizes, and how much it grows from the smallest to the largest (the
// product decision: constant in the image size, at most 10% growth from 1 to 16 GiB, at most 256 MB).
// Images up to 4 GiB are the benchmarks' VM-like image; larger ones are mostly zeros and repeated text
// (memory.ts), so that 16 GiB runs in minutes. Measures, asserts nothing.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Baseline, baselineArg, buildBaseline } from './baseline.js';
import { GiB, mb } from './measure.js';
import { OPERATIONS, type Operation, peakRss, writeImage } from './memory.js';
import { BACKY_BIN, REPO } from './paths.js';

const argv = process.argv.slice(2);
const at = argv.indexOf('--sizes');
const sizes = (at >= 0 ? argv[at + 1]! : '1G,4G,16G').split(',').map((text) => {
  const m = /^(\d+(?:\.\d+)?)\s*(G|GiB|M|MiB)$/i.exec(text.trim());
  if (m == null) throw new Error(`--sizes ${text}: expected sizes like 256M,1G,16G`);
  return Math.round(Number(m[1]) * (/^g/i.test(m[2]!) ? GiB : 1024 ** 2));
});
const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-memory');
const rev = baselineArg(argv);
const baseline: Baseline | null = rev == null ? null : await buildBaseline(rev);
const bins: [string, string][] = [['backy', BACKY_BIN]];
if (baseline != null) bins.push([`backy@${baseline.rev}`, baseline.bin]);

const label = (size: number) => (size >= GiB ? `${size / GiB} GiB` : `${size / 1024 ** 2} MiB`);
const results = new Map<string, Record<Operation, number>>();
try {
  for (const size of sizes) {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const image = join(dir, 'vm.img');
    const kind = size > 4 * GiB ? 'sparse' : 'vm';
    console.log(`${label(size)} (${kind} image) …`);
    for (const [name, bin] of bins) {
      await writeImage(image, size, kind);
      results.set(`${name} ${size}`, await peakRss(bin, dir, image, size));
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
  await baseline?.remove();
}

console.log(`\npeak RSS${''.padEnd(14)}${OPERATIONS.map((op) => op.padStart(13)).join('')}`);
for (const [name] of bins) {
  for (const size of sizes) {
    const r = results.get(`${name} ${size}`)!;
    console.log(
      `${`${name} ${label(size)}`.padEnd(22)}${OPERATIONS.map((op) => mb(r[op]).padStart(13)).join('')}`,
    );
  }
  const first = results.get(`${name} ${sizes[0]}`)!;
  const last = results.get(`${name} ${sizes.at(-1)}`)!;
  console.log(
    `${`${name} growth`.padEnd(22)}${OPERATIONS.map((op) => `${(((last[op] - first[op]) / first[op]) * 100).toFixed(0)}%`.padStart(13)).join('')}   (${label(sizes[0]!)} → ${label(sizes.at(-1)!)}; target ≤ 10%, every cell ≤ 256 MB)`,
  );
}
