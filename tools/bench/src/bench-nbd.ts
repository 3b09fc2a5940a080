// `pnpm bench:nbd`: the qcow2 source of @backy/source-nbd through the backy binary (not a test):
//   a 4 GiB qcow2 with VM-like data → full backup; 1% of its 4 MiB regions changed through qemu-io →
//   incremental from the dirty bitmap; bytes read and time of the incremental as a fraction of the full
//   in the same run. Then a full backup of a mostly unallocated 4 GiB qcow2 (5% written): bytes read
//   against its allocated bytes. Prints ratios; asserts nothing.
//
//   BENCH_SIZE (bytes, default 4 GiB), BENCH_DIR (default .bench-nbd in the repository)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeVmImage } from '@backy/core/testing/helpers';
import { MiB } from './measure.js';
import { REPO } from './paths.js';
import { warmMemory } from './warm-memory.js';

const REGION = 4 * MiB;
const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-nbd');
const SIZE = Number(process.env.BENCH_SIZE ?? 4 * 1024 ** 3);
const wrapper = fileURLToPath(new URL('./rss-wrapper.js', import.meta.url));
const rssFile = join(dir, 'rss');
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

interface Measured {
  seconds: number;
  rss: number;
  bytesRead: number;
  mode: unknown;
}

const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { maxBuffer: 64 * MiB }).toString();

async function backup(archive: string, tag: string): Promise<Measured> {
  await rm(rssFile, { force: true });
  spawnSync('sync');
  warmMemory();
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [wrapper, '-b', archive, 'backup', '-f', tag], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, BACKY_RSS_FILE: rssFile },
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.status !== 0) throw new Error(`backy backup failed (${r.status}): ${r.stderr}`);
  const rss = Number((await readFile(rssFile, 'utf8')).trim());
  const revs = JSON.parse(run(process.execPath, wrapper, '-b', archive, 'status', '--json')).revisions as {
    stats: { bytesRead: number };
    sourceInfo: { mode: unknown };
  }[];
  const last = revs.at(-1)!;
  return { seconds, rss, bytesRead: last.stats.bytesRead, mode: last.sourceInfo.mode };
}

/** Bytes of the image that qemu reports allocated (data, not zero). */
function allocated(image: string): number {
  const map = JSON.parse(run('qemu-img', 'map', '--output=json', image)) as {
    length: number;
    data: boolean;
    zero: boolean;
  }[];
  return map.filter((e) => e.data && !e.zero).reduce((n, e) => n + e.length, 0);
}

/** qemu-io writes of 4 KiB at a random place in `count` distinct 4 MiB regions (as `pnpm bench` does). */
function changeRegions(image: string, count: number): void {
  const regions = Math.floor(SIZE / REGION);
  const chosen = new Set<number>();
  while (chosen.size < Math.min(count, regions)) chosen.add(Math.floor(Math.random() * regions));
  const commands = [...chosen].flatMap((index) => [
    '-c',
    `write -q -P ${1 + (index % 250)} ${index * REGION + Math.floor(Math.random() * (REGION / 4096)) * 4096} 4k`,
  ]);
  run('qemu-io', '-f', 'qcow2', ...commands, image);
}

const row = (name: string, m: Measured, extra: string) =>
  console.log(
    `${name.padEnd(28)} ${m.seconds.toFixed(2).padStart(7)} s   read ${mb(m.bytesRead).padStart(8)}   ${extra}   peak RSS ${mb(m.rss)}   (mode ${String(m.mode)})`,
  );

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
console.log(`backy qcow2 (NBD) benchmark: ${(SIZE / 1024 ** 3).toFixed(2)} GiB images, one run`);

const raw = join(dir, 'vm.raw');
const image = join(dir, 'vm.qcow2');
await writeVmImage(raw, SIZE);
run('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, image);
await rm(raw);
const archive = join(dir, 'archive');
run(process.execPath, wrapper, '-b', archive, 'init', 'qcow2', image);
const full = await backup(archive, 'full');
const changed = Math.max(1, Math.round(SIZE / REGION / 100));
changeRegions(image, changed);
const incr = await backup(archive, 'incremental');
console.log(
  `VM-like image: ${mb(allocated(image))} allocated; ${changed} of ${SIZE / REGION} 4 MiB regions changed (1%)`,
);
row('full backup', full, 'baseline         ');
row(
  'incremental (1%, bitmap)',
  incr,
  `${pct(incr.bytesRead / full.bytesRead)} of the bytes (target ≤ 3%), ${(incr.seconds / full.seconds).toFixed(3)}× the time (target ≤ 0.15×)`,
);
await rm(archive, { recursive: true, force: true });
await rm(image);

const sparse = join(dir, 'sparse.qcow2');
run('qemu-img', 'create', '-q', '-f', 'qcow2', sparse, String(SIZE));
// 5% written, in 64 MiB extents spread over the disk.
const extents = Math.max(1, Math.round((SIZE * 0.05) / (64 * MiB)));
run(
  'qemu-io',
  '-f',
  'qcow2',
  ...Array.from({ length: extents }, (_, i) => [
    '-c',
    `write -q -P ${1 + i} ${Math.floor((i * SIZE) / extents / MiB)}M 64M`,
  ]).flat(),
  sparse,
);
const sparseArchive = join(dir, 'archive-sparse');
run(process.execPath, wrapper, '-b', sparseArchive, 'init', 'qcow2', sparse);
const sparseFull = await backup(sparseArchive, 'full');
const used = allocated(sparse);
row(
  'full, mostly unallocated',
  sparseFull,
  `${(sparseFull.bytesRead / used).toFixed(3)}× its ${mb(used)} allocated (target 1.00×), ${pct(sparseFull.bytesRead / SIZE)} of the disk, ${(sparseFull.seconds / full.seconds).toFixed(3)}× the VM-like full's time`,
);
await rm(dir, { recursive: true, force: true });
