// `pnpm bench:peers`: backy, borg and restic on the same VM-like image (4 GiB; `--quick` or `--size 1G`
// for 1 GiB), in rounds that alternate the order of the tools: a full backup, an incremental one after
// 1% of the chunks changed, a restore. Medians, ratios to the durable copy (cp + sync) measured in the
// same rounds and to each other, peak RSS, store size. A peer that is not installed is skipped with a
// message (Debian: apt-get install borgbackup restic). `--baseline REV` adds backy as of that git
// revision, built in a temporary worktree, as one more peer, and prints the A/B ratios. Last, a memory
// line: peak RSS of a backup and a restore of a 16 GiB image, mostly zeros and text (`--no-16g` leaves
// it out). Measures, asserts nothing.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeVmImage } from '@backy/core/testing/helpers';
import { baselineArg, buildBaseline } from './baseline.js';
import {
  benchSize,
  changeOnePercent,
  copyDurably,
  diskUsage,
  GiB,
  mb,
  median,
  timed,
  timedWithRss,
} from './measure.js';
import { peakRss, writeImage } from './memory.js';
import { BACKY_BIN, REPO } from './paths.js';
import { WARM_BYTES } from './warm-memory.js';

const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-peers');
const SIZE = benchSize(process.argv.slice(2), 4 * GiB);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const image = join(dir, 'vm.img');
const rssFile = join(dir, 'rss');

type Phase = 'full' | 'incr' | 'restore';
const PHASES: Phase[] = ['full', 'incr', 'restore'];

interface Command {
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** How one tool is driven. Each makes its repository fresh per round; a restore is durable (synced). */
interface Peer {
  name: string;
  /** Why it cannot run here, or null. */
  missing: string | null;
  init(repo: string): Command;
  backup(repo: string, round: number, step: number): Command;
  /** Restores the newest backup to `target` (a file; its directory exists). */
  restore(repo: string, round: number, target: string): Command;
}

const found = (cmd: string, versionArg: string, hint: string) =>
  spawnSync(cmd, [versionArg], { stdio: 'ignore' }).status === 0 ? null : `${cmd} not found (${hint})`;
const durably = (command: string, target: string): Command => ({
  cmd: 'sh',
  args: ['-c', `${command} && sync "${target}"`],
});

const borgEnv = {
  BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
  BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  BORG_BASE_DIR: join(dir, 'borg-home'),
};
const resticEnv = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: join(dir, 'restic-cache') };

const backyPeer = (name: string, bin: string): Peer => ({
  name,
  missing: null,
  init: (repo) => ({ cmd: process.execPath, args: [bin, '-b', repo, 'init', 'file', image] }),
  backup: (repo) => ({ cmd: process.execPath, args: [bin, '-b', repo, 'backup', 'daily'] }),
  restore: (repo, _round, target) => ({ cmd: process.execPath, args: [bin, '-b', repo, 'restore', target] }),
});
const argv = process.argv.slice(2);
const baselineRev = baselineArg(argv);
const built = baselineRev == null ? null : await buildBaseline(baselineRev);
const BASELINE_NAME = `backy@${baselineRev}`;

const peers: Peer[] = [
  backyPeer('backy', BACKY_BIN),
  ...(built == null ? [] : [backyPeer(BASELINE_NAME, built.bin)]),
  {
    // borg 1.2 defaults: lz4, no encryption asked for (backy's default store is not encrypted either).
    name: 'borg',
    missing: found('borg', '--version', 'apt-get install borgbackup'),
    init: (repo) => ({ cmd: 'borg', args: ['init', '-e', 'none', repo], env: borgEnv }),
    backup: (repo, round, step) => ({
      cmd: 'borg',
      args: ['create', `${repo}::r${round}-${step}`, 'vm.img'],
      env: borgEnv,
      cwd: dir,
    }),
    restore: (repo, round, target) => ({
      ...durably(`cd "$(dirname "${target}")" && borg extract "${repo}::r${round}-2"`, target),
      env: borgEnv,
    }),
  },
  {
    // restic always encrypts; 0.14 compresses (auto) in its default repository version 2.
    name: 'restic',
    missing: found('restic', 'version', 'apt-get install restic'),
    init: (repo) => ({ cmd: 'restic', args: ['init', '-r', repo], env: resticEnv }),
    backup: (repo) => ({ cmd: 'restic', args: ['-r', repo, 'backup', 'vm.img'], env: resticEnv, cwd: dir }),
    restore: (repo, _round, target) => ({
      ...durably(`restic -r "${repo}" restore latest --target "$(dirname "${target}")"`, target),
      env: resticEnv,
    }),
  },
];

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
const active = peers.filter((p) => p.missing == null);
for (const p of peers) if (p.missing != null) console.log(`${p.name}: skipped: ${p.missing}`);
console.log(
  `peers benchmark: ${(SIZE / GiB).toFixed(2)} GiB VM-like image, ${active.map((p) => p.name).join(', ')}, ${RUNS} rounds, medians`,
);
await writeVmImage(image, SIZE);

const copies: Record<Phase, number[]> = { full: [], incr: [], restore: [] };
const seconds = new Map(
  active.map((p) => [p.name, { full: [], incr: [], restore: [] } as Record<Phase, number[]>]),
);
const rss = new Map(active.map((p) => [p.name, [] as number[]]));
const stores = new Map(active.map((p) => [p.name, [] as number[]]));

const run = async (peer: Peer, phase: Phase, c: Command) => {
  const r = await timedWithRss(c.cmd, c.args, rssFile, c.env, c.cwd);
  seconds.get(peer.name)![phase].push(r.seconds);
  rss.get(peer.name)!.push(r.rss);
};
const baseline = (phase: Phase) => {
  const copy = join(dir, 'copy.img');
  copies[phase].push(copyDurably(image, copy));
  rmSync(copy, { force: true });
};

for (let round = 0; round < RUNS; round++) {
  // Rotate who goes first, so that no tool always meets the page cache the one before left.
  const order = active.map((_, i) => active[(i + round) % active.length]!);
  const repo = (p: Peer) => join(dir, `repo-${p.name}`);
  for (const p of order) {
    await rm(repo(p), { recursive: true, force: true });
    const c = p.init(repo(p));
    timed(c.cmd, c.args, c.env, c.cwd);
  }
  baseline('full');
  for (const p of order) await run(p, 'full', p.backup(repo(p), round, 1));
  await changeOnePercent(image, SIZE);
  baseline('incr');
  for (const p of order) await run(p, 'incr', p.backup(repo(p), round, 2));
  baseline('restore');
  for (const p of order) {
    const target = join(dir, `restore-${p.name}`, 'vm.img');
    await mkdir(join(dir, `restore-${p.name}`), { recursive: true });
    await run(p, 'restore', p.restore(repo(p), round, target));
    await rm(join(dir, `restore-${p.name}`), { recursive: true, force: true });
  }
  for (const p of order) {
    stores.get(p.name)!.push(diskUsage(repo(p)));
    await rm(repo(p), { recursive: true, force: true });
  }
}

const fmt = (s: number) => `${s.toFixed(2)} s`;
const names = active.map((p) => p.name);
console.log(`\n${'phase'.padEnd(12)}${'cp + sync'.padStart(11)}${names.map((n) => n.padStart(20)).join('')}`);
for (const phase of PHASES) {
  const base = median(copies[phase]);
  const cells = names.map((n) => {
    const m = median(seconds.get(n)![phase]);
    return `${fmt(m)} (${(m / base).toFixed(2)}×)`.padStart(20);
  });
  console.log(`${phase.padEnd(12)}${fmt(base).padStart(11)}${cells.join('')}`);
}
if (names.includes('backy')) {
  for (const phase of PHASES) {
    const mine = median(seconds.get('backy')![phase]);
    const against = names
      .filter((n) => n !== 'backy' && n !== BASELINE_NAME)
      .map((n) => `${n} ${(median(seconds.get(n)![phase]) / mine).toFixed(2)}×`);
    if (against.length > 0) console.log(`${phase}: ${against.join(', ')} backy's time (target ≥ 2×)`);
  }
}
for (const n of names) {
  const all = seconds.get(n)!;
  console.log(
    `${n}: peak RSS ${mb(Math.max(...rss.get(n)!))}, store after 2 backups ${mb(median(stores.get(n)!))} ` +
      `(runs: ${PHASES.map((ph) => `${ph} ${all[ph].map((x) => x.toFixed(2)).join('/')}`).join(', ')})`,
  );
}
console.log(
  `cp + sync runs: ${PHASES.map((ph) => `${ph} ${copies[ph].map((x) => x.toFixed(2)).join('/')}`).join(', ')}`,
);
if (built != null) {
  const ab = PHASES.map((phase) => {
    const ratio = median(seconds.get('backy')![phase]) / median(seconds.get(BASELINE_NAME)![phase]);
    return `${phase} ${ratio.toFixed(2)}×`;
  });
  console.log(`A/B: backy's time ÷ ${BASELINE_NAME}'s: ${ab.join(', ')} (below 1: faster than the baseline)`);
}
if (WARM_BYTES === 0) console.log('(memory not warmed before timed steps: BENCH_WARM=0)');
await rm(dir, { recursive: true, force: true });

if (!argv.includes('--no-16g')) {
  // Memory must not grow with the image: a 16 GiB image (mostly zeros and text, so that it runs in
  // minutes) against the peak RSS of the rounds above.
  const size = 16 * GiB;
  await mkdir(dir, { recursive: true });
  const big = join(dir, 'vm16.img');
  const bins: [string, string][] = [['backy', BACKY_BIN]];
  if (built != null) bins.push([BASELINE_NAME, built.bin]);
  for (const [name, bin] of bins) {
    await writeImage(big, size, 'sparse');
    const r = await peakRss(bin, dir, big, size, ['backup', 'restore']);
    console.log(
      `${name}, 16 GiB image: peak RSS backup ${mb(r.backup)}, restore ${mb(r.restore)} (rounds above: ${mb(Math.max(...rss.get(name)!))})`,
    );
  }
  await rm(dir, { recursive: true, force: true });
}
await built?.remove();
