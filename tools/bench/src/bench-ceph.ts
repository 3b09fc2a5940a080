// Benchmark of the ceph-rbd source on the throw-away test cluster (not a test):
//   1 GiB image with VM-like data → full backup, then incremental backups after changing 1% of the image
//   (clustered and scattered), each next to `rbd export` of the same snapshot in the same run.
//
//   pnpm bench:ceph [--size-mib 1024]
//
// Uses CEPH_CONF if set, otherwise starts scripts/ceph-test-cluster in a temporary directory and stops it.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as core from '@backy/core';
import { vmLikeRegions } from '@backy/core/testing/helpers';
import * as ceph from '@backy/source-ceph-rbd';
import { createFileSource } from '@backy/source-file';
import pino from 'pino';
import { MiB } from './measure.js';
import { REPO } from './paths.js';

const { values } = parseArgs({ options: { 'size-mib': { type: 'string', default: '1024' } } });
const CHUNK = 4 * MiB;
const size = Number(values['size-mib']) * MiB;
const POOL = 'rbd'; // the test cluster's pool
const image = `bench-${process.pid}`;
const logger = pino({ level: process.env.BENCH_LOG ?? 'warn' });

const work = mkdtempSync(join(tmpdir(), 'backy-bench-ceph-'));
const clusterScript = join(REPO, 'scripts/ceph-test-cluster');
let clusterDir: string | null = null;
let conf = process.env.CEPH_CONF;
if (!conf) {
  clusterDir = join(work, 'cluster');
  const out = execFileSync(clusterScript, ['start', clusterDir], {
    env: { ...process.env, CEPH_TEST_MEMSTORE_BYTES: String(Math.max(4 * 1024 * MiB, size * 4)) },
    encoding: 'utf8',
  });
  conf = /^CEPH_CONF=(.*)$/m.exec(out)![1]!;
}

let peakRss = 0;
const rssTimer = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 50);

function rbd(...args: string[]): string {
  return execFileSync('rbd', ['--conf', conf!, ...args], { encoding: 'utf8', maxBuffer: 64 * MiB });
}

/** Streams an rbd diff v1 (records built lazily) into `rbd import-diff - POOL/IMAGE`. */
async function importDiff(records: Iterable<ceph.RbdDiffRecord>): Promise<void> {
  const child = spawn('rbd', ['--conf', conf!, 'import-diff', '--no-progress', '-', `${POOL}/${image}`], {
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  const done = new Promise<void>((resolve, reject) =>
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`rbd import-diff exited ${code}`)),
    ),
  );
  const write = (buffer: Buffer) =>
    child.stdin.write(buffer) ? null : new Promise((r) => child.stdin.once('drain', r));
  await write(Buffer.from('rbd diff v1\n'));
  for (const record of records) await write(ceph.encodeRbdDiff([record]).subarray(12));
  await write(Buffer.from('e'));
  child.stdin.end();
  await done;
}

/** VM-like content (@backy/core/testing's images, in 4 MiB regions), made one region at a time. */
function* vmLike(): Generator<ceph.RbdDiffRecord> {
  yield { type: 'size', size };
  for (const { offset, data } of vmLikeRegions(size)) yield { type: 'data', offset, data };
}

/** Time of `rbd export SNAP -` read through a pipe (as the backup reads it) and to a file. */
async function rbdExport(snapshot: string): Promise<{ pipe: number; toFile: number; bytes: number }> {
  const started = performance.now();
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      'rbd',
      ['--conf', conf!, 'export', '--no-progress', `${POOL}/${image}@${snapshot}`, '-'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    child.stdout.on('data', (b: Buffer) => {
      bytes += b.length;
    });
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`rbd export exited ${code}`))));
  });
  const pipe = (performance.now() - started) / 1000;
  const file = join(work, 'export.img');
  const fileStarted = performance.now();
  rbd('export', '--no-progress', `${POOL}/${image}@${snapshot}`, file);
  execFileSync('sync');
  const toFile = (performance.now() - fileStarted) / 1000;
  rmSync(file);
  return { pipe, toFile, bytes };
}

async function backup(archive: core.Archive, tag: string) {
  const source = ceph.createRbdSource({ pool: POOL, image, conf: conf!, 'full-always': false }, { logger });
  const started = performance.now();
  peakRss = process.memoryUsage().rss;
  const rssBefore = peakRss;
  const rev = await core.runBackup(archive, source, { tags: [tag], force: true, logger });
  const wall = (performance.now() - started) / 1000;
  return { rev, wall, rssBefore, rssPeak: peakRss };
}

const fmt = (s: number) => `${s.toFixed(2)} s`;
const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(1)}%`;

try {
  console.log(
    `backy ceph-rbd benchmark: ${mib(size)} image, ${CHUNK / MiB} MiB chunks, ${process.platform} ${process.arch}, node ${process.version}`,
  );
  rbd('create', '--size', `${size}B`, `${POOL}/${image}`);
  const t = performance.now();
  await importDiff(vmLike());
  console.log(
    `filled the image with VM-like data (40% random, 30% text, 30% zeros) in ${fmt((performance.now() - t) / 1000)}`,
  );

  const archive = await core.Archive.init(join(work, 'archive'), {
    source: { type: 'ceph-rbd', pool: POOL, image, conf },
  });
  const rows: ({ name: string; export: Awaited<ReturnType<typeof rbdExport>> } & Awaited<
    ReturnType<typeof backup>
  >)[] = [];

  const full = await backup(archive, 'full');
  const fullExport = await rbdExport(`backy-${full.rev.uuid}`);
  rows.push({ name: 'full backup', ...full, export: fullExport });

  // Baseline for the store's own cost: the file source backing up the same snapshot exported to a file.
  const exported = join(work, 'snapshot.img');
  rbd('export', '--no-progress', `${POOL}/${image}@backy-${full.rev.uuid}`, exported);
  const fileArchive = await core.Archive.init(join(work, 'file-archive'), {
    source: { type: 'file', filename: exported },
  });
  const fileStarted = performance.now();
  await core.runBackup(fileArchive, createFileSource({ filename: exported }), {
    tags: ['full'],
    force: true,
    logger,
  });
  const fileBackup = (performance.now() - fileStarted) / 1000;
  rmSync(exported);
  rmSync(join(work, 'file-archive'), { recursive: true, force: true });

  // 1% changed in three contiguous, unaligned regions (a log file, a database table, a package update).
  const change = Math.round(size / 100);
  const third = Math.floor(change / 3);
  await importDiff([
    { type: 'size', size },
    { type: 'data', offset: Math.floor(size * 0.13) + 12345, data: randomBytes(third) },
    { type: 'data', offset: Math.floor(size * 0.51) + 777, data: randomBytes(third) },
    { type: 'data', offset: Math.floor(size * 0.87) + 4096, data: randomBytes(change - 2 * third) },
  ]);
  const clustered = await backup(archive, 'clustered');
  rows.push({
    name: 'incremental, 1% changed in 3 regions',
    ...clustered,
    export: await rbdExport(`backy-${clustered.rev.uuid}`),
  });

  // 1% changed as 40 scattered 256 KiB writes: every write dirties a whole 4 MiB object and chunk.
  const writes: ceph.RbdDiffRecord[] = [];
  const slots = new Set<number>();
  while (slots.size < Math.round(change / (256 * 1024)))
    slots.add(Math.floor(Math.random() * (size / CHUNK)));
  for (const slot of [...slots].sort((a, b) => a - b))
    writes.push({ type: 'data', offset: slot * CHUNK + 65536, data: randomBytes(256 * 1024) });
  await importDiff([{ type: 'size', size }, ...writes]);
  const scattered = await backup(archive, 'scattered');
  rows.push({
    name: `incremental, 1% changed in ${writes.length} scattered 256 KiB writes`,
    ...scattered,
    export: await rbdExport(`backy-${scattered.rev.uuid}`),
  });

  console.log('');
  for (const r of rows) {
    const { name, rev, wall, export: exp } = r;
    const s = rev.stats;
    console.log(`${name}:`);
    console.log(
      `  backup wall time ${fmt(wall)} (revision duration ${fmt(s.duration)}, incl. snapshot, verification ${rev.verification?.method} ${rev.verification?.chunks_checked}/${rev.verification?.chunks_total} chunks, clean-up)`,
    );
    console.log(
      `  rbd export of the same snapshot: ${fmt(exp.pipe)} through a pipe, ${fmt(exp.toFile)} to a file → backup/export ratio ${(wall / exp.pipe).toFixed(2)} (pipe), ${(wall / exp.toFile).toFixed(2)} (file)`,
    );
    console.log(
      `  read from Ceph ${mib(s.bytes_read)}, stored ${mib(s.bytes_written)} in ${s.chunks_written} new chunks, ${s.chunks_reused} reused, ${s.chunks_zero} zero; mode ${rev.source_info?.mode}`,
    );
    console.log(`  process RSS ${mib(r.rssBefore)} before, peak ${mib(r.rssPeak)} during the backup`);
  }
  // The part of every backup that does not depend on the data: Ceph's snapshot create and remove.
  const snapStarted = performance.now();
  rbd('snap', 'create', '--no-progress', `${POOL}/${image}@bench-probe`);
  const snapCreate = (performance.now() - snapStarted) / 1000;
  const rmStarted = performance.now();
  rbd('snap', 'rm', '--no-progress', `${POOL}/${image}@bench-probe`);
  const snapRemove = (performance.now() - rmStarted) / 1000;
  console.log('');
  console.log(
    `file source backing up the same snapshot exported to a local file (store cost baseline): ${fmt(fileBackup)}`,
  );
  console.log(
    `fixed Ceph cost per backup, measured alone: rbd snap create ${fmt(snapCreate)}, rbd snap rm ${fmt(snapRemove)}`,
  );
  const [f, c, sc] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]];
  console.log('');
  console.log('incremental vs full backup:');
  for (const r of [c, sc]) {
    console.log(
      `  ${r.name}: time ${pct(r.wall, f.wall)}, bytes read ${pct(r.rev.stats.bytes_read, f.rev.stats.bytes_read)}, bytes written ${pct(r.rev.stats.bytes_written, f.rev.stats.bytes_written)}`,
    );
  }
} finally {
  clearInterval(rssTimer);
  try {
    rbd('snap', 'purge', '--no-progress', `${POOL}/${image}`);
    rbd('rm', '--no-progress', `${POOL}/${image}`);
  } catch {}
  if (clusterDir) execFileSync(clusterScript, ['stop', clusterDir], { stdio: 'inherit' });
  rmSync(work, { recursive: true, force: true });
}
