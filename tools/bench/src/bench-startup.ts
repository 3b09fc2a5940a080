// `pnpm bench:startup [--runs N] [--baseline REV]`: the CPU time (user + sys, from GNU time) of commands that should
// cost little more than starting Node: `backy --version`, `backy --help` and `backy status` on a small
// directory archive, beside `node -e 0` measured in the same rounds (the machine may be shared: the
// commands take turns, so that a busy moment weighs on all of them alike). The target is ≤ 150 ms for
// `--version` and `status`. Medians of N runs (10 by default); with --baseline, the same commands of
// that commit's build in the same rounds. Measures, asserts nothing.
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Baseline, baselineArg, buildBaseline } from './baseline.js';
import { median } from './measure.js';
import { BACKY_BIN, REPO } from './paths.js';

const argv = process.argv.slice(2);
const at = argv.indexOf('--runs');
const RUNS = at >= 0 ? Number(argv[at + 1]) : 10;
if (!Number.isInteger(RUNS) || RUNS < 1)
  throw new Error(`--runs ${argv[at + 1]}: expected a whole number ≥ 1`);
const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-startup');
const archive = join(dir, 'archive');
const timeFile = join(dir, 'time');

if (spawnSync('/usr/bin/time', ['-f', '%U', 'true'], { stdio: 'ignore' }).status !== 0)
  throw new Error('bench:startup needs GNU time at /usr/bin/time (Debian package time)');

/** Runs the command under GNU time; its CPU seconds (user + sys). Throws with its stderr if it fails. */
async function cpuSeconds(args: string[]): Promise<number> {
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', '-o', timeFile, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const [user, sys] = (await readFile(timeFile, 'utf8')).trim().split('\n').at(-1)!.split(' ').map(Number);
  return user! + sys!;
}

function backy(...args: string[]): void {
  const r = spawnSync(process.execPath, [BACKY_BIN, '-b', archive, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`backy ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
}

const rev = baselineArg(argv);
const baseline: Baseline | null = rev == null ? null : await buildBaseline(rev);
const bins: [string, string][] = [['backy', BACKY_BIN]];
if (baseline != null) bins.push([`backy@${baseline.rev}`, baseline.bin]);
const CASES: [string, string[]][] = [
  ['node -e 0', [process.execPath, '-e', '0']],
  ...bins.flatMap(([name, bin]): [string, string[]][] => [
    [`${name} --version`, [process.execPath, bin, '--version']],
    [`${name} --help`, [process.execPath, bin, '--help']],
    [`${name} status (directory)`, [process.execPath, bin, '-b', archive, 'status']],
  ]),
];

try {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  // A small archive with two revisions: status reads its config, its revisions and its chunk maps.
  const image = join(dir, 'disk.img');
  await writeFile(image, Buffer.alloc(8 * 1024 * 1024, 'backy start-up benchmark '));
  backy('init', 'file', image);
  backy('backup', 'daily');
  backy('backup', 'weekly');
  const times = new Map<string, number[]>(CASES.map(([name]) => [name, []]));
  for (let round = 0; round < RUNS; round++) {
    for (const [name, args] of CASES) times.get(name)!.push(await cpuSeconds(args));
  }
  const base = median(times.get('node -e 0')!);
  const ms = (seconds: number) => `${(seconds * 1000).toFixed(0)} ms`;
  console.log(`\nCPU (user + sys), median of ${RUNS} runs; Node ${process.version}\n`);
  console.log(
    `${'command'.padEnd(36)}${'CPU'.padStart(10)}${'min'.padStart(10)}${'beyond node'.padStart(14)}`,
  );
  for (const [name] of CASES) {
    const xs = times.get(name)!;
    const m = median(xs);
    const extra = name === 'node -e 0' ? '' : `+${ms(m - base)}`;
    console.log(
      `${name.padEnd(36)}${ms(m).padStart(10)}${ms(Math.min(...xs)).padStart(10)}${extra.padStart(14)}`,
    );
  }
  console.log('\ntarget: backy --version and backy status ≤ 150 ms');
} finally {
  await rm(dir, { recursive: true, force: true });
  await baseline?.remove();
}
