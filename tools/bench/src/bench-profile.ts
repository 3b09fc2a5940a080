// `pnpm bench:profile`: where a backup's time goes. Runs a full backup, an incremental after 1% of the
// chunks changed and a restore of the benchmarks' VM-like image (1 GiB; `--size 4G`) under
// `node --cpu-prof`, which writes one profile per thread (the main thread and each chunk worker), and
// prints per phase: wall time, CPU time (user+sys, GNU time), the durable copy of the same image, and per
// thread the sampled time by kind of work (hashing, zstd, file I/O, garbage collection, idle, …) with the
// heaviest functions. What it shows is what bounds each phase: a core busy all the time (CPU), or idle
// threads waiting for the disk. Measures, asserts nothing.
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { writeVmImage } from '@backy/core/testing/helpers';
import { benchSize, changeOnePercent, copyDurably, GiB } from './measure.js';
import { BACKY_BIN, REPO } from './paths.js';
import { warmMemory } from './warm-memory.js';

const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-profile');
const SIZE = benchSize(process.argv.slice(2), GiB);
const image = join(dir, 'vm.img');
const archive = join(dir, 'archive');

/** One node of a `.cpuprofile` (the Chrome DevTools format Node writes). */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The kind of work a sampled function is, from its name and script. */
function kindOf(frame: ProfileNode['callFrame']): string {
  const { functionName: name, url } = frame;
  if (name === '(idle)') return 'idle (waiting)';
  if (name === '(garbage collector)') return 'garbage collection';
  if (name === '(program)') return 'V8/native (unattributed)';
  if (/zstd/i.test(url) || /zstd|compress/i.test(name)) return 'zstd';
  if (/blake3|chunk-hash|mmh3|sha256/i.test(url) || /hash|blake3|digest/i.test(name)) return 'hashing';
  // The only WebAssembly backy runs is zstd's decompressor (zstd-wasm.js).
  if (url.startsWith('wasm://')) return 'zstd (WebAssembly)';
  if (name === 'compileForInternalLoader') return 'module loading';
  if (/^node:(fs|internal\/fs)/.test(url) || /^(read|write|fsync|open|close|fdatasync|pread)/i.test(name))
    return 'file I/O';
  if (/^node:/.test(url) || url === '') return 'Node.js internals';
  if (/node_modules/.test(url)) return 'dependencies';
  return 'backy';
}

interface ThreadSummary {
  file: string;
  totalMs: number;
  byKind: Map<string, number>;
  byFunction: Map<string, number>;
}

function summarise(file: string, profile: Profile): ThreadSummary {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const byKind = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let totalMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const frame = nodes.get(id)!.callFrame;
    totalMs += ms;
    const kind = kindOf(frame);
    byKind.set(kind, (byKind.get(kind) ?? 0) + ms);
    const where = frame.url.split('/').slice(-1)[0] || '(native)';
    const fn = `${frame.functionName || '(anonymous)'} ${where}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + ms);
  });
  return { file, totalMs, byKind, byFunction };
}

/** `node --cpu-prof` names a profile CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is main. */
const threadOf = (file: string) =>
  file.split('.').at(-3) === '0' ? 'main' : `worker ${file.split('.').at(-3)}`;

function top(map: Map<string, number>, n: number): [string, number][] {
  return [...map].sort((a, b) => b[1] - a[1]).slice(0, n);
}

async function profiled(phase: string, args: string[]): Promise<void> {
  const profiles = join(dir, `prof-${phase}`);
  await rm(profiles, { recursive: true, force: true });
  await mkdir(profiles, { recursive: true });
  spawnSync('sync');
  warmMemory();
  const r = spawnSync(
    '/usr/bin/time',
    ['-f', '%e %U %S %M', process.execPath, '--cpu-prof', '--cpu-prof-dir', profiles, BACKY_BIN, ...args],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`backy ${args.join(' ')} failed: ${r.stderr}`);
  const [wall, user, sys, kib] = r.stderr.trim().split('\n').at(-1)!.split(' ').map(Number) as number[];
  const cpu = user! + sys!;
  const cores = availableParallelism();
  console.log(
    `\n## ${phase}: ${wall!.toFixed(2)} s wall, ${cpu.toFixed(2)} s CPU (user ${user!.toFixed(2)}, sys ${sys!.toFixed(2)}: ${((cpu / wall! / cores) * 100).toFixed(0)}% of ${cores} cores), peak RSS ${(kib! / 1024).toFixed(0)} MiB`,
  );
  for (const file of (await readdir(profiles)).sort()) {
    const s = summarise(file, JSON.parse(await readFile(join(profiles, file), 'utf8')) as Profile);
    const busy = s.totalMs - (s.byKind.get('idle (waiting)') ?? 0);
    console.log(
      `  ${threadOf(file)}: ${(busy / 1000).toFixed(2)} s busy of ${(s.totalMs / 1000).toFixed(2)} s`,
    );
    for (const [kind, ms] of top(s.byKind, 8))
      console.log(
        `    ${kind.padEnd(26)} ${(ms / 1000).toFixed(2).padStart(6)} s  ${((ms / s.totalMs) * 100).toFixed(0).padStart(3)}%`,
      );
    console.log('    heaviest:');
    for (const [fn, ms] of top(s.byFunction, 6).filter(([fn]) => !fn.startsWith('(idle)')))
      console.log(`      ${(ms / 1000).toFixed(2).padStart(6)} s  ${fn}`);
  }
}

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
await writeVmImage(image, SIZE);
console.log(`profile: ${(SIZE / GiB).toFixed(2)} GiB VM-like image, Node ${process.version}`);
const copy = copyDurably(image, join(dir, 'copy.img'));
await rm(join(dir, 'copy.img'));
console.log(`durable copy (cp + sync): ${copy.toFixed(2)} s`);
const init = spawnSync(process.execPath, [BACKY_BIN, '-b', archive, 'init', 'file', image], {
  encoding: 'utf8',
});
if (init.status !== 0) throw new Error(`backy init failed: ${init.stderr}`);
await profiled('full backup', ['-b', archive, 'backup', 'daily']);
await changeOnePercent(image, SIZE);
await profiled('incremental', ['-b', archive, 'backup', 'daily']);
await profiled('restore', ['-b', archive, 'restore', join(dir, 'restored.img')]);
await rm(dir, { recursive: true, force: true });
