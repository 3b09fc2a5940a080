// What the file benchmarks share: image size from the command line, timing with a settled page cache,
// the durable copy every ratio is taken against, medians and sizes.
import { spawnSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { changeBlocks, GiB, MiB } from '@backy/core/testing/helpers';
import { warmMemory } from './warm-memory.js';

export { GiB, MiB };

/**
 * The image size: `--quick` (1 GiB), `--size 1G` / `--size 4GiB` / bytes, or $BENCH_SIZE in the same
 * forms; `fallback` otherwise.
 */
export function benchSize(argv: string[], fallback: number): number {
  if (argv.includes('--quick')) return GiB;
  const at = argv.indexOf('--size');
  const text = at >= 0 ? argv[at + 1] : process.env.BENCH_SIZE;
  if (text == null || text === '') return fallback;
  const m = /^(\d+(?:\.\d+)?)\s*(G|GiB|M|MiB)?$/i.exec(text.trim());
  if (m == null) throw new Error(`--size ${text}: expected bytes or a size like 1G, 4GiB, 512M`);
  const unit = m[2] == null ? 1 : /^g/i.test(m[2]) ? GiB : 1024 ** 2;
  return Math.round(Number(m[1]) * unit);
}

/** Runs a command to completion and returns its wall-clock seconds; throws with its stderr if it fails. */
export function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): number {
  // Start every measurement with nothing left to write back from the one before.
  spawnSync('sync');
  warmMemory();
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
    cwd,
    maxBuffer: 64 * 1024 ** 2,
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return seconds;
}

/** `timed` under GNU time: seconds and the command's peak RSS in bytes (0 without /usr/bin/time). */
export async function timedWithRss(
  cmd: string,
  args: string[],
  rssFile: string,
  env: NodeJS.ProcessEnv = {},
  cwd?: string,
): Promise<{ seconds: number; rss: number }> {
  await rm(rssFile, { force: true });
  if (!hasGnuTime) return { seconds: timed(cmd, args, env, cwd), rss: 0 };
  const seconds = timed('/usr/bin/time', ['-f', '%M', '-o', rssFile, cmd, ...args], env, cwd);
  const kib = Number((await readFile(rssFile, 'utf8')).trim().split('\n').at(-1));
  return { seconds, rss: kib * 1024 };
}
const hasGnuTime = spawnSync('/usr/bin/time', ['-f', '%M', 'true'], { stdio: 'ignore' }).status === 0;

/** The baseline: a copy of the image that is on disk when it returns. */
export const copyDurably = (from: string, to: string): number =>
  timed('sh', ['-c', `cp "${from}" "${to}" && sync "${to}"`]);

/** Overwrites a 4 KiB block in 1% of the image's 4 MiB chunks (at least one). */
export const changeOnePercent = (image: string, size: number): Promise<void> =>
  changeBlocks(image, size, Math.max(1, Math.round(size / (4 * 1024 * 1024) / 100)));

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;

/** Bytes a directory tree holds on disk (`du -sb`). */
export function diskUsage(path: string): number {
  return Number(spawnSync('du', ['-sb', path]).stdout.toString().split('\t')[0]);
}
