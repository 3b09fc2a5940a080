// `pnpm bench:qemu`: the qemu source of @backy/source-qemu through the backy binary (not a test):
//   a 4 GiB qcow2 with VM-like data (3 GiB allocated). Baseline in the same run: a full backup of the
//   image offline with the qcow2 source (what `pnpm bench:nbd` measures). Then the image runs in a QEMU
//   (-machine none) and a "guest" writes 20 MB/s into it (1 MiB writes through the human monitor's
//   qemu-io) while backy makes a full backup of the running VM: its time against the baseline (target
//   ≤ 1.2×), and the guest's write latency while idle and during the backup (backy's pull mode always
//   parks the old data in a local fleecing image: "during the backup" is the fleecing cost). Last, an
//   incremental after 1% of the 4 MiB regions changed (after one more backup that takes in what the guest
//   wrote during the full): bytes read (target ≤ 3% of the disk; also printed as a share of the full's) and time
//   (target ≤ 0.15× the full's). Prints ratios; asserts nothing.
//
//   BENCH_SIZE (bytes, default 4 GiB), BENCH_DIR (default .bench-qemu in the repository)
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeVmImage } from '@backy/core/testing/helpers';
import { QmpClient } from '@backy/source-qemu';
import { MiB } from './measure.js';
import { BACKY_BIN, REPO } from './paths.js';
import { warmMemory } from './warm-memory.js';

const REGION = 4 * MiB;
const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-qemu');
const SIZE = Number(process.env.BENCH_SIZE ?? 4 * 1024 ** 3);
const GUEST_RATE = 20e6;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
const ms = (x: number) => `${x.toFixed(1)} ms`;

const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { maxBuffer: 64 * MiB }).toString();

interface Measured {
  seconds: number;
  bytesRead: number;
  mode: unknown;
}

/**
 * `backy backup` of `archive`, timed; what it read, from `status --json`. `during` runs from just
 * before the backup starts until it exits: started after warmMemory and stopped before `status`, whose
 * synchronous spawns would stall it (and a paced writer then makes up for the stall in a burst).
 */
async function backup(
  archive: string,
  tag: string,
  during?: () => { stop(): Promise<void> },
): Promise<Measured> {
  warmMemory();
  const writer = during?.();
  const start = process.hrtime.bigint();
  const child = spawn(process.execPath, [BACKY_BIN, '-b', archive, 'backup', '-f', tag], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise((r) => child.once('exit', r));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await writer?.stop();
  if (code !== 0) throw new Error(`backy backup failed (${code}): ${stderr}`);
  const revs = JSON.parse(run(process.execPath, BACKY_BIN, '-b', archive, 'status', '--json')).revisions as {
    stats: { bytesRead: number };
    sourceInfo: { mode: unknown };
  }[];
  const last = revs.at(-1)!;
  return { seconds, bytesRead: last.stats.bytesRead, mode: last.sourceInfo.mode };
}

/** A guest writing `rate` bytes/s in 1 MiB writes at random places, until stopped; write latencies in ms. */
function guestWriter(qmp: QmpClient, rate: number) {
  const latencies: number[] = [];
  let stopped = false;
  let node = 'drive0';
  const interval = (MiB / rate) * 1000;
  const start = performance.now();
  const done = (async () => {
    for (let i = 0; !stopped; i++) {
      const started = performance.now();
      const offset = Math.floor(Math.random() * (SIZE / MiB)) * MiB;
      const reply = await qmp.execute<string>('human-monitor-command', {
        'command-line': `qemu-io ${node} "write -q -P ${1 + (i % 250)} ${offset} 1M"`,
      });
      if (/Permission conflict|not found/.test(reply)) {
        // A backup filter came or went: the guest's writes go through whatever is on top of drive0.
        const nodes = await qmp.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true });
        node = nodes.find((n) => n['node-name'].startsWith('backy-filter-'))?.['node-name'] ?? 'drive0';
        continue;
      }
      latencies.push(performance.now() - started);
      // Paced against the start, not the last write: after a slow write the guest catches up, so a
      // slow phase lowers the rate only when writes take longer than the interval on average.
      await new Promise((r) => setTimeout(r, Math.max(0, start + (i + 1) * interval - performance.now())));
    }
  })();
  return {
    latencies,
    /** How long it ran (ms), set by `stop`. */
    ran: 0,
    async stop() {
      stopped = true;
      await done;
      this.ran = performance.now() - start;
    },
  };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
};

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
console.log(`backy qemu (running VM) benchmark: ${(SIZE / 1024 ** 3).toFixed(2)} GiB disk, one run`);
const raw = join(dir, 'vm.raw');
const image = join(dir, 'vm.qcow2');
await writeVmImage(raw, SIZE);
run('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, image);
await rm(raw);

// The baseline: the same image, offline, with the qcow2 source (bench:nbd's full backup).
const offline = join(dir, 'archive-offline');
run(process.execPath, BACKY_BIN, '-b', offline, 'init', 'qcow2', image);
const base = await backup(offline, 'full');
await rm(offline, { recursive: true, force: true });
// The qcow2 source's bitmap stays out of the way of the running VM's.
const info = JSON.parse(run('qemu-img', 'info', '--output=json', image)) as {
  'format-specific'?: { data?: { bitmaps?: { name: string }[] } };
};
for (const b of info['format-specific']?.data?.bitmaps ?? [])
  run('qemu-img', 'bitmap', '--remove', image, b.name);

const qmpPath = join(dir, 'qmp.sock');
const benchQmp = join(dir, 'qmp-bench.sock');
run(
  'qemu-system-x86_64',
  ...['-machine', 'none', '-nodefaults', '-display', 'none', '-daemonize', '-pidfile', join(dir, 'qemu.pid')],
  ...['-blockdev', `driver=file,filename=${image},node-name=file0`],
  ...['-blockdev', 'driver=qcow2,file=file0,node-name=drive0'],
  ...['-qmp', `unix:${qmpPath},server=on,wait=off`, '-qmp', `unix:${benchQmp},server=on,wait=off`],
);
const qmp = await QmpClient.connect(benchQmp);
try {
  const archive = join(dir, 'archive');
  const fleecing = join(dir, 'fleecing');
  run(
    process.execPath,
    BACKY_BIN,
    '-b',
    archive,
    'init',
    'qemu',
    '-o',
    `qmp=${qmpPath}`,
    '-o',
    'drive=drive0',
    '-o',
    `fleecing-dir=${fleecing}`,
  );

  const idle = guestWriter(qmp, GUEST_RATE);
  await new Promise((r) => setTimeout(r, 5000));
  await idle.stop();
  let writer: ReturnType<typeof guestWriter> | undefined;
  const live = await backup(archive, 'full', () => {
    writer = guestWriter(qmp, GUEST_RATE);
    return writer;
  });
  const during = writer!;

  // The guest's writes during the full are the next backup's: one backup without a writer absorbs them.
  await backup(archive, 'settle');
  // 1% of the 4 MiB regions changed, 4 KiB each, as bench:nbd does, while the VM runs.
  const regions = Math.floor(SIZE / REGION);
  const changed = Math.max(1, Math.round(regions / 100));
  const chosen = new Set<number>();
  while (chosen.size < changed) chosen.add(Math.floor(Math.random() * regions));
  for (const index of chosen) {
    const offset = index * REGION + Math.floor(Math.random() * (REGION / 4096)) * 4096;
    await qmp.execute('human-monitor-command', {
      'command-line': `qemu-io drive0 "write -q -P ${1 + (index % 250)} ${offset} 4k"`,
    });
  }
  const incr = await backup(archive, 'incremental');

  const row = (name: string, m: Measured, extra: string) =>
    console.log(
      `${name.padEnd(34)} ${m.seconds.toFixed(2).padStart(7)} s   read ${mb(m.bytesRead).padStart(8)}   ${extra}   (mode ${String(m.mode)})`,
    );
  row('full, offline (qcow2 source)', base, 'baseline');
  row(
    'full, running VM, guest 20 MB/s',
    live,
    `${(live.seconds / base.seconds).toFixed(2)}× the offline full (target ≤ 1.2×)`,
  );
  row(
    'incremental (1% regions), running',
    incr,
    `${((incr.bytesRead / SIZE) * 100).toFixed(1)}% of the disk (target ≤ 3%; ${((incr.bytesRead / live.bytesRead) * 100).toFixed(1)}% of the full's bytes), ${(incr.seconds / live.seconds).toFixed(3)}× the full's time (target ≤ 0.15×)`,
  );
  const lat = (name: string, xs: number[]) =>
    console.log(
      `guest 1 MiB write latency, ${name.padEnd(24)} median ${ms(quantile(xs, 0.5))}, p99 ${ms(quantile(xs, 0.99))} (${xs.length} writes)`,
    );
  lat('idle', idle.latencies);
  lat('during the backup (fleecing)', during.latencies);
  console.log(
    `guest writes during the backup: ${mb(during.latencies.length * MiB)} in ${(during.ran / 1000).toFixed(1)} s = ${mb((during.latencies.length * MiB) / (during.ran / 1000))}/s (target rate ${mb(GUEST_RATE)}/s; one write at a time through the monitor)`,
  );
} finally {
  await qmp.execute('quit').catch(() => {});
  qmp.close();
}
await rm(dir, { recursive: true, force: true });
