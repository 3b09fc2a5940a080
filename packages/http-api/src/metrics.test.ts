import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archive, parseCentralConfig, readRevisions } from '@backy/core';
import { type JobRunner, Scheduler } from '@backy/scheduler';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import { type MetricFamily, metricValue, parseMetrics } from '@backy/test-env/prometheus';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetricsTextfile } from './metrics-textfile.js';
import { schedulerBackend } from './scheduler-backend.js';
import { ApiServer } from './server.js';

// The metrics of a real archive: two backups and a purge by the real CLI, then the daemon's view of
// them through /metrics and the node_exporter textfile, checked against the revisions' own records and
// against what the image and the store hold.

const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;
const READ = 'read-token-0123456789';
const skip = skipWithoutCli('http-api metrics', null);
const logger = pino({ level: 'silent' });

function backy(...args: string[]): void {
  const r = spawnSync(process.execPath, [BACKY_BIN, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`backy ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
}

/** Chunk files in a local store (`XX/HASH`) and their bytes, walked here as the metrics never do. */
async function walkStore(root: string): Promise<{ chunks: number; bytes: number }> {
  let chunks = 0;
  let bytes = 0;
  for (const dir of await readdir(root)) {
    if (!/^[0-9a-f]{2}$/.test(dir)) continue;
    for (const name of await readdir(join(root, dir))) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      chunks++;
      bytes += (await stat(join(root, dir, name))).size;
    }
  }
  return { chunks, bytes };
}

/** A runner the daemon must not use here: the test's backups are made by hand, before it starts. */
const idleRunner: JobRunner = new Proxy({} as JobRunner, {
  get: (_t, name) => () => Promise.reject(new Error(`the daemon ran ${String(name)}`)),
});

let root: string;
let scheduler: Scheduler;
let api: ApiServer;

beforeAll(async () => {
  if (skip != null) return;
  root = await mkdtemp(join(tmpdir(), 'backy-metrics-'));
  const image = join(root, 'vm.img');
  const a = randomBytes(CHUNK);
  // A chunk twice (dedup), a zero chunk, and one that changes between the two backups.
  await writeFile(image, Buffer.concat([a, a, Buffer.alloc(CHUNK), randomBytes(CHUNK)]));
  const archive = join(root, 'base', 'vm');
  await mkdir(join(root, 'base'));
  backy('-b', archive, 'init', 'file', image);
  backy('-b', archive, 'backup', 'daily');
  await writeFile(image, Buffer.concat([a, a, Buffer.alloc(CHUNK), randomBytes(CHUNK)]));
  backy('-b', archive, 'backup', 'daily');
  backy('-b', archive, 'purge');
  const configPath = join(root, 'backy.conf');
  await writeFile(
    configPath,
    // JSON is YAML too.
    JSON.stringify({
      global: { 'base-dir': join(root, 'base'), verify: false },
      schedules: { s: { daily: { interval: '1d', keep: 10 } } },
      jobs: { vm: { schedule: 's', source: { type: 'file', filename: image } } },
    }),
  );
  scheduler = await Scheduler.start({ configPath, logger, runner: idleRunner });
  const { config } = parseCentralConfig(
    { api: { listen: '127.0.0.1:0', tokens: [{ name: 'prometheus', role: 'read', value: READ }] } },
    'backy.conf',
  );
  const s = scheduler;
  api = await ApiServer.start({
    backend: schedulerBackend(s, (path) => Archive.open(path)),
    config: config.api!,
    logger,
    version: '0.0.0-test',
  });
}, 120_000);

afterAll(async () => {
  if (skip != null) return;
  await api?.close();
  await scheduler?.stop();
  await rm(root, { recursive: true, force: true });
});

/** Checks the metrics of the known run, wherever they were read from. */
async function expectKnownRun(families: MetricFamily[]): Promise<void> {
  const value = (name: string, labels: Record<string, string> = {}) => {
    const v = metricValue(families, name, labels);
    expect(v, `${name} ${JSON.stringify(labels)}`).toBeDefined();
    return Number(v);
  };
  const archive = join(root, 'base', 'vm');
  const revisions = await readRevisions(archive);
  const newest = revisions.at(-1)!;
  expect(value('backy_job_revisions', { job: 'vm' })).toBe(2);
  // The newest revision's own record, and what the image says it must be.
  expect(value('backy_job_last_backup_read_bytes', { job: 'vm' })).toBe(newest.stats.bytes_read);
  expect(newest.stats.bytes_read).toBe(4 * CHUNK);
  expect(value('backy_job_last_backup_written_bytes', { job: 'vm' })).toBe(newest.stats.bytes_written);
  expect(value('backy_job_last_backup_chunks', { job: 'vm', kind: 'new' })).toBe(1);
  expect(value('backy_job_last_backup_chunks', { job: 'vm', kind: 'reused' })).toBe(
    newest.stats.chunks_reused,
  );
  expect(newest.stats.chunks_reused).toBeGreaterThan(0);
  // The store: the chunks A, B and B' as they lie on disk; each revision holds 3 chunks of data.
  const store = join(archive, 'chunks');
  const onDisk = await walkStore(store);
  expect(onDisk.chunks).toBe(3);
  expect(value('backy_store_chunks', { store })).toBe(3);
  expect(value('backy_store_size_bytes', { store })).toBe(onDisk.bytes);
  expect(value('backy_store_referenced_bytes', { store })).toBe(2 * 3 * CHUNK);
  expect(value('backy_store_dedup_ratio', { store })).toBeCloseTo((2 * 3 * CHUNK) / onDisk.bytes, 9);
  expect(value('backy_store_revisions', { store })).toBe(2);
  const updated = value('backy_store_stats_timestamp_seconds', { store });
  expect(Date.now() / 1000 - updated).toBeGreaterThanOrEqual(0);
  expect(Date.now() / 1000 - updated).toBeLessThan(300);
}

describe.skipIf(skip != null)('the metrics of a real archive', () => {
  it('serves the revisions’ work and the store’s size, chunks and dedup ratio on /metrics', async () => {
    const r = await fetch(`${api.urls[0]}/metrics`, { headers: { authorization: `Bearer ${READ}` } });
    expect(r.status).toBe(200);
    const families = parseMetrics(await r.text());
    await expectKnownRun(families);
    expect(metricValue(families, 'process_cpu_seconds_total')).toBeDefined();
  });

  it('writes the same metrics to a node_exporter textfile, atomically, without the process ones', async () => {
    const path = join(root, 'textfile', 'backy.prom');
    await mkdir(join(root, 'textfile'));
    const s = scheduler;
    const textfile = new MetricsTextfile({
      source: { jobs: () => s.jobs(), summary: () => s.summary(), version: '0.0.0-test' },
      path: () => path,
      logger,
    });
    await textfile.write();
    await textfile.close();
    const families = parseMetrics(await readFile(path, 'utf8'));
    await expectKnownRun(families);
    // node_exporter has process_* of its own: the same name from the textfile would fail its scrape.
    expect(families.filter((f) => /^(process|nodejs)_/.test(f.name))).toEqual([]);
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    // Nothing left behind by the atomic write.
    expect(await readdir(join(root, 'textfile'))).toEqual(['backy.prom']);
  });
});
