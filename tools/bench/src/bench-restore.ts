// Restore benchmark (issue 6): `backy restore` of a VM-like revision against a durable copy of the same
// image (`cp` then `sync FILE`), and `nbdcopy` through `backy nbd-server` against `backy restore`;
// alternating order, several runs, medians, ratios. Optionally the same onto a loop device.
// Measures, asserts nothing (except that every copy is byte-identical to the image).
//
//   pnpm bench:restore                                       # 1 GiB, 5 runs
//   BENCH_SIZE=268435456 BENCH_RUNS=3 pnpm bench:restore
//   BENCH_LOOP=1 pnpm bench:restore                          # also restore onto a loop device (root)
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeVmImage } from '@backy/core/testing/helpers';
import { BACKY_BIN as BIN, REPO } from './paths.js';
import { warmMemory } from './warm-memory.js';

const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-restore');
const SIZE = Number(process.env.BENCH_SIZE ?? 1024 ** 3);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const LOOP = process.env.BENCH_LOOP === '1';

function sh(command: string): string {
  const r = spawnSync('sh', ['-c', command], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${command} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

function timed(command: string): number {
  warmMemory();
  const start = process.hrtime.bigint();
  sh(command);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const q = (p: string) => `'${p.replaceAll("'", "'\\''")}'`;

async function startServer(archive: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [BIN, '-b', archive, 'nbd-server', '-p', '0', '--insecure-tcp'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let text = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr.on('data', (d) => {
      text += d;
      const m = /nbd:\/\/127\.0\.0\.1:(\d+)\//.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`nbd-server exited (${code}): ${text}`)));
  });
  return { child, port };
}

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
const image = join(dir, 'vm.img');
const archive = join(dir, 'archive');
const target = join(dir, 'target.img');
console.log(
  `restore benchmark: ${(SIZE / 1024 ** 3).toFixed(2)} GiB VM-like image (40% random, 30% text, 30% zero, sparse), ${RUNS} runs, alternating order, medians`,
);
await writeVmImage(image, SIZE);
sh(
  `node ${q(BIN)} -b ${q(archive)} init file ${q(image)} && node ${q(BIN)} -b ${q(archive)} backup -f bench`,
);
const server = await startServer(archive);
const uri = `nbd://127.0.0.1:${server.port}/last`;

const tasks: Record<string, () => number> = {
  'cp + sync': () => timed(`cp ${q(image)} ${q(target)} && sync ${q(target)}`),
  'backy restore': () => timed(`node ${q(BIN)} -b ${q(archive)} restore -r last ${q(target)}`),
  'nbdcopy via nbd-server': () => timed(`nbdcopy --flush ${q(uri)} ${q(target)}`),
};
let loop: string | null = null;
if (LOOP) {
  const backing = join(dir, 'loop-backing.img');
  sh(`truncate -s ${SIZE} ${q(backing)}`);
  loop = sh(`losetup -f --show ${q(backing)}`).trim();
  tasks['dd to loop (oflag=direct)'] = () =>
    timed(`dd if=${q(image)} of=${loop} bs=4M oflag=direct status=none`);
  tasks['backy restore to loop'] = () => timed(`node ${q(BIN)} -b ${q(archive)} restore -r last ${loop}`);
}
const names = Object.keys(tasks);
const times: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
try {
  // Warm-up (not counted) and a correctness check of every path.
  for (const name of names) {
    await rm(target, { force: true });
    tasks[name]!();
    const out = name.includes('loop') ? loop! : target;
    sh(`cmp -n ${SIZE} ${q(image)} ${q(out)}`);
  }
  for (let run = 0; run < RUNS; run++) {
    const order = names.map((_, i) => names[(i + run) % names.length]!);
    for (const name of order) {
      await rm(target, { force: true });
      times[name]!.push(tasks[name]!());
    }
    console.log(`run ${run + 1}: ${order.map((n) => `${n} ${times[n]!.at(-1)!.toFixed(2)}s`).join(', ')}`);
  }
} finally {
  server.child.kill('SIGTERM');
  if (loop) spawnSync('losetup', ['-d', loop]);
}

const med: Record<string, number> = Object.fromEntries(names.map((n) => [n, median(times[n]!)]));
console.log('\nmedians:');
for (const n of names)
  console.log(`  ${n.padEnd(28)} ${med[n]!.toFixed(2)} s  (${(SIZE / 1e6 / med[n]!).toFixed(0)} MB/s)`);
const ratio = (a: string, b: string) => med[a]! / med[b]!;
console.log('\nratios (target in brackets):');
console.log(
  `  backy restore / (cp + sync)          ${ratio('backy restore', 'cp + sync').toFixed(2)}  (<= 1.10)`,
);
console.log(
  `  nbdcopy via nbd-server / restore     ${ratio('nbdcopy via nbd-server', 'backy restore').toFixed(2)}  (<= 1.50)`,
);
if (LOOP)
  console.log(
    `  restore to loop / dd to loop         ${ratio('backy restore to loop', 'dd to loop (oflag=direct)').toFixed(2)}`,
  );
console.log(`\n${JSON.stringify({ size: SIZE, runs: RUNS, medians: med, times })}`);
await rm(dir, { recursive: true, force: true });
