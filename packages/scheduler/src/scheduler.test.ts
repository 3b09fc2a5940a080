import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newRevisionId, writeRevisionFile } from '@backy/core';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { JobRequest, JobRunner, RunResult } from './runner.js';
import { nextSlotAfter, spreadOffsetMs } from './schedule-math.js';
import { Scheduler } from './scheduler.js';
import { readStatusFile } from './status-file.js';

const logger = pino({ level: 'silent' });
const OK: RunResult = { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };

async function writeRevision(dir: string, tags: string[], at = new Date(), duration = 0.5) {
  await mkdir(dir, { recursive: true });
  const uuid = newRevisionId();
  await writeRevisionFile(join(dir, `${uuid}.rev`), {
    uuid,
    timestamp: at.toISOString(),
    parent: null,
    tags,
    trust: 'trusted',
    size: 0,
    backend_type: 'chunked',
    stats: { bytes_written: 0, bytes_read: 0, duration, chunks_written: 0, chunks_reused: 0, chunks_zero: 0 },
  });
  return uuid;
}

/** A runner that "backs up" by writing a revision file, after an optional delay, and records what it did. */
class FakeRunner implements JobRunner {
  calls: { op: string; job: string; tags?: string[]; target?: string; at: number }[] = [];
  active = 0;
  maxActive = 0;
  delayMs: (job: string) => number = () => 0;
  fail: (job: string) => boolean = () => false;
  callbackInputs: { job: string; program: string; input: string }[] = [];
  copyFails = false;

  async backup(request: JobRequest & { tags: string[] }): Promise<RunResult> {
    this.calls.push({ op: 'backup', job: request.job, tags: request.tags, at: Date.now() });
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      const aborted = await new Promise<boolean>((resolve) => {
        if (request.signal.aborted) return resolve(true);
        const timer = setTimeout(() => resolve(false), this.delayMs(request.job));
        request.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      if (aborted) return { ok: false, exitCode: null, signal: 'SIGTERM', stderr: '', durationMs: 1 };
      if (this.fail(request.job))
        return { ok: false, exitCode: 75, signal: null, stderr: 'source unavailable', durationMs: 1 };
      await writeRevision(request.dir, request.tags);
      return OK;
    } finally {
      this.active--;
    }
  }
  async expire(request: JobRequest) {
    this.calls.push({ op: 'expire', job: request.job, at: Date.now() });
    return OK;
  }
  async purge(request: JobRequest) {
    this.calls.push({ op: 'purge', job: request.job, at: Date.now() });
    return OK;
  }
  async copy(request: JobRequest & { target: string }): Promise<RunResult> {
    this.calls.push({ op: 'copy', job: request.job, target: request.target, at: Date.now() });
    if (this.copyFails)
      return { ok: false, exitCode: 1, signal: null, stderr: 'target unreachable', durationMs: 1 };
    return OK;
  }
  async callback(request: JobRequest & { program: string; input: string }) {
    this.calls.push({ op: 'callback', job: request.job, at: Date.now() });
    this.callbackInputs.push({ job: request.job, program: request.program, input: request.input });
    return OK;
  }
  backups(job?: string) {
    return this.calls.filter((c) => c.op === 'backup' && (job == null || c.job === job));
  }
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const started: Scheduler[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()));
});

async function setup(config: Record<string, unknown>) {
  const root = await mkdtemp(join(tmpdir(), 'backy-sched-'));
  const base = join(root, 'base');
  const configPath = join(root, 'backy.conf');
  const full = {
    ...config,
    global: { 'base-dir': base, 'status-interval': 1, ...(config.global as object) },
  };
  await writeFile(configPath, stringify(full));
  const runner = new FakeRunner();
  const start = async (extra: Partial<ConstructorParameters<typeof Object>[0]> = {}) => {
    const s = await Scheduler.start({ configPath, logger, runner, stopTimeoutMs: 5000, ...extra });
    started.push(s);
    return s;
  };
  return { root, base, configPath, runner, start, full };
}

const schedules = { quick: { short: { interval: '1h', keep: 3 }, long: { interval: '1d', keep: 2 } } };
const fileJob = (name: string) => ({
  schedule: 'quick',
  source: { type: 'file', filename: `/images/${name}.img` },
});

describe('Scheduler', () => {
  it('runs new jobs at once with all tags, writes their archive config, expires, purges and calls back', async () => {
    const t = await setup({
      global: { 'backup-completed-callback': '/bin/true' },
      schedules,
      jobs: { a: fileJob('a'), b: fileJob('b') },
    });
    const s = await t.start();
    await until(() => t.runner.callbackInputs.length === 2);
    expect(t.runner.backups().map((c) => [c.job, c.tags])).toEqual([
      ['a', ['short', 'long']],
      ['b', ['short', 'long']],
    ]);
    expect(t.runner.calls.filter((c) => c.job === 'a').map((c) => c.op)).toEqual([
      'backup',
      'expire',
      'purge',
      'callback',
    ]);
    const archiveConfig = parse(await readFile(join(t.base, 'a', 'config'), 'utf8'));
    expect(archiveConfig).toEqual({
      source: { type: 'file', filename: '/images/a.img' },
      schedule: schedules.quick,
    });
    const revs = parse(t.runner.callbackInputs[0]!.input);
    expect(revs).toHaveLength(1);
    expect(revs[0].tags).toEqual(['short', 'long']);
    await until(() => s.jobs().every((j) => j.status === 'waiting'));
    const status = s.jobs();
    expect(status.map((j) => j.job)).toEqual(['a', 'b']);
    // The next hourly slot is the daily one too once a day (a's, at 18:39 UTC): then both are due.
    const slot = (seconds: number) => nextSlotAfter(Date.now(), seconds, spreadOffsetMs('a', seconds));
    expect(status[0]).toMatchObject({
      sla: 'OK',
      sla_overdue: 0,
      status: 'waiting',
      last_tags: 'short,long',
      next_tags: slot(3600) === slot(86400) ? 'short,long' : 'short',
    });
    expect(Date.parse(status[0]!.next_time!) - Date.now()).toBeLessThanOrEqual(3600_000);
    // No second run: nothing is due for an hour.
    await new Promise((r) => setTimeout(r, 300));
    expect(t.runner.backups()).toHaveLength(2);
  });

  it('keeps store and layout settings of an existing archive config', async () => {
    const t = await setup({ schedules, jobs: { a: fileJob('a') } });
    await mkdir(join(t.base, 'a'), { recursive: true });
    await writeFile(
      join(t.base, 'a', 'config'),
      stringify({
        source: { type: 'file', filename: '/old' },
        store: { path: '../store', codec: 'deflate' },
      }),
    );
    await t.start();
    await until(() => t.runner.backups().length === 1);
    expect(parse(await readFile(join(t.base, 'a', 'config'), 'utf8'))).toEqual({
      source: { type: 'file', filename: '/images/a.img' },
      store: { path: '../store', codec: 'deflate' },
      schedule: schedules.quick,
    });
  });

  it("writes the central config's object store into every job's archive config", async () => {
    const store = { type: 's3', endpoint: 'http://127.0.0.1:7480', bucket: 'backy', prefix: 'fleet/' };
    const t = await setup({
      global: { store },
      schedules,
      jobs: { a: fileJob('a'), b: { ...fileJob('b'), store: { ...store, prefix: 'b-own/' } } },
    });
    await t.start();
    await until(() => t.runner.backups().length === 2);
    const configOf = async (job: string) => parse(await readFile(join(t.base, job, 'config'), 'utf8'));
    // One archive per prefix: the global store gives each job a prefix of its own; a job's own is as written.
    expect((await configOf('a')).store).toEqual({ ...store, prefix: 'fleet/a/' });
    expect((await configOf('b')).store).toEqual({ ...store, prefix: 'b-own/' });
  });

  it('catches up exactly the missed tags of an existing archive', async () => {
    const t = await setup({ schedules, jobs: { a: fileJob('a'), b: fileJob('b') } });
    // a: the daily tag is recent, the hourly one is three hours old. b: both recent enough. "Recent" is
    // just after the tag's last slot (real time: a fixed age could straddle a slot on some runs).
    const justAfterLastSlot = (job: string, seconds: number) =>
      new Date(nextSlotAfter(Date.now() - seconds * 1000, seconds, spreadOffsetMs(job, seconds)) + 1);
    await writeRevision(join(t.base, 'a'), ['long'], justAfterLastSlot('a', 86400));
    await writeRevision(join(t.base, 'a'), ['short'], new Date(Date.now() - 3 * 3600_000));
    await writeRevision(join(t.base, 'b'), ['short', 'long'], justAfterLastSlot('b', 3600));
    const s = await t.start();
    await until(() => t.runner.backups().length >= 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(t.runner.backups().map((c) => [c.job, c.tags])).toEqual([['a', ['short']]]);
    expect(s.jobs().find((j) => j.job === 'b')!.status).toBe('waiting');
  });

  it('never runs more than worker-limit backups at once, and keeps a worker for fast jobs', async () => {
    const jobs = Object.fromEntries(['s1', 's2', 's3', 'f1', 'f2', 'f3'].map((n) => [n, fileJob(n)]));
    const t = await setup({ global: { 'worker-limit': 2 }, schedules, jobs });
    // The s* jobs were slow last time (an hour-long backup), more than a day ago: all jobs are due.
    for (const n of ['s1', 's2', 's3'])
      await writeRevision(join(t.base, n), ['short', 'long'], new Date(Date.now() - 2 * 86400_000), 3600);
    t.runner.delayMs = (job) => (job.startsWith('s') ? 400 : 50);
    const s = await t.start();
    await until(() => t.runner.backups().length === 6, 15_000);
    expect(t.runner.maxActive).toBe(2);
    // All fast jobs went through while the first slow job still held its worker.
    const firstSlowEnd = t.runner.backups('s1')[0]!.at + 400;
    for (const f of ['f1', 'f2', 'f3']) expect(t.runner.backups(f)[0]!.at).toBeLessThan(firstSlowEnd);
    expect(s.summary().workerLimit).toBe(2);
  });

  it('copies to copy-to after expire and purge, before the callback; a failed copy is only a warning', async () => {
    const t = await setup({
      global: { 'copy-to': '/mnt/offsite', 'backup-completed-callback': '/bin/true' },
      schedules,
      jobs: {
        a: fileJob('a'),
        b: { ...fileJob('b'), 'copy-to': '/mnt/other/b-copy' },
        c: { ...fileJob('c'), 'copy-to': false },
      },
    });
    const lines: { level: number; msg: string; job?: string; stderr?: string }[] = [];
    const capture = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    t.runner.copyFails = true;
    const s = await t.start({ logger: capture });
    await until(() => t.runner.callbackInputs.length === 3);
    const ops = (job: string) => t.runner.calls.filter((c) => c.job === job).map((c) => c.op);
    expect(ops('a')).toEqual(['backup', 'expire', 'purge', 'copy', 'callback']);
    expect(ops('b')).toEqual(['backup', 'expire', 'purge', 'copy', 'callback']);
    expect(ops('c')).toEqual(['backup', 'expire', 'purge', 'callback']);
    expect(t.runner.calls.filter((c) => c.op === 'copy').map((c) => [c.job, c.target])).toEqual([
      ['a', '/mnt/offsite/a'],
      ['b', '/mnt/other/b-copy'],
    ]);
    await until(() => s.jobs().every((j) => j.status === 'waiting'));
    // The backups stay successes: no failure counted, no retry.
    for (const job of s.jobs()) expect(job.sla).toBe('OK');
    expect(s.summary().states.failed).toBe(0);
    const warnings = lines.filter((l) => l.level === 40 && l.msg.startsWith('copy to '));
    expect(warnings.map((l) => [l.job, l.msg, l.stderr])).toEqual([
      ['a', 'copy to /mnt/offsite/a failed', 'target unreachable'],
      ['b', 'copy to /mnt/other/b-copy failed', 'target unreachable'],
    ]);
  });

  it('retries a failed backup with backoff and reports the failure', async () => {
    const t = await setup({ schedules, jobs: { a: fileJob('a') } });
    t.runner.fail = () => true;
    const s = await t.start();
    await until(() => s.jobs()[0]!.status === 'failed');
    const job = s.jobs()[0]!;
    const retryIn = Date.parse(job.next_time!) - Date.now();
    expect(retryIn).toBeGreaterThan(110_000);
    expect(retryIn).toBeLessThanOrEqual(120_000);
    expect(job.next_tags).toBe('short,long');
    expect(s.summary().states.failed).toBe(1);
    // `run` does not wait for the backoff.
    t.runner.fail = () => false;
    expect(s.runJob('a')).toBe('started');
    await until(() => s.jobs()[0]!.status === 'waiting');
    expect(s.jobs()[0]!.last_tags).toBe('short,long');
    expect(s.runJob('nope')).toBe('unknown job');
    // Both runs, newest first, with the failure's reason.
    const runs = s.runs('a')!;
    expect(runs.map((r) => [r.kind, r.outcome, r.kind === 'backup' ? r.tags : null])).toEqual([
      ['backup', 'ok', ['short', 'long']],
      ['backup', 'failed', ['short', 'long']],
    ]);
    expect(runs[0]!.reason).toBeNull();
    expect(runs[1]!.reason).toBe(job.last_reason);
    expect(runs[1]!.reason).not.toBeNull();
    expect(runs[0]!.started).toBeGreaterThanOrEqual(runs[1]!.ended);
    expect(s.runs('nope')).toBeNull();
  });

  it('reloads: adds, changes and removes jobs; rejects an invalid config and keeps the old one', async () => {
    const t = await setup({ schedules, jobs: { a: fileJob('a'), b: fileJob('b') } });
    t.runner.delayMs = (job) => (job === 'b' ? 500 : 0);
    const s = await t.start();
    await until(() => t.runner.backups().length === 2);
    // b is running now; remove it, change a, add c.
    const next = {
      ...t.full,
      jobs: { a: { ...fileJob('a'), source: { type: 'file', filename: '/new/a.img' } }, c: fileJob('c') },
    };
    await writeFile(t.configPath, stringify(next));
    const result = await s.reload();
    expect(result).toEqual({ ok: true, added: ['c'], removed: ['b'], changed: ['a'] });
    // The running backup of b was not disturbed.
    await until(() => s.jobs().every((j) => j.status === 'waiting') && t.runner.backups('c').length === 1);
    expect(await readdirNames(join(t.base, 'b'))).toContain('config');
    expect(s.jobs().map((j) => j.job)).toEqual(['a', 'c']);
    expect(s.runJob('a')).toBe('started');
    await until(() => s.jobs()[0]!.status === 'waiting');
    expect(parse(await readFile(join(t.base, 'a', 'config'), 'utf8')).source.filename).toBe('/new/a.img');

    await writeFile(
      t.configPath,
      stringify({ ...next, jobs: { ...next.jobs, d: { schedule: 'missing', source: { type: 'file' } } } }),
    );
    const bad = await s.reload();
    expect(bad).toEqual({
      ok: false,
      error: expect.stringContaining('jobs.d.schedule: unknown schedule "missing"'),
    });
    expect(s.jobs().map((j) => j.job)).toEqual(['a', 'c']);
    await writeFile(t.configPath, 'jobs: [unclosed');
    expect((await s.reload()).ok).toBe(false);
    expect(s.jobs().map((j) => j.job)).toEqual(['a', 'c']);
  });

  it('writes the status file atomically every status-interval', async () => {
    const t = await setup({ schedules, jobs: { a: fileJob('a') } });
    const s = await t.start();
    await until(() => s.jobs()[0]!.last_time != null);
    await until(async () => (await readStatusFile(join(t.base, 'status')))?.jobs[0]?.last_time != null, 5000);
    const first = (await readStatusFile(join(t.base, 'status')))!;
    expect(Object.keys(first.jobs[0]!).sort()).toEqual(
      [
        'job',
        'sla',
        'sla_overdue',
        'status',
        'last_time',
        'last_tags',
        'last_duration',
        'next_time',
        'next_tags',
        'manual_tags',
        'last_trust',
        'last_verification',
        'damaged_revisions',
        'last_snapshot',
        'history_lost',
        // What the newest revision's backup did (its stats), for the metrics.
        'revisions',
        'last_bytes_read',
        'last_bytes_written',
        'last_chunks_written',
        'last_chunks_reused',
        'last_outcome',
        'last_reason',
        'last_run',
        'consecutive_failures',
        'last_success',
        // The verify job (verify-job.ts).
        'verify_status',
        'verify_last_time',
        'verify_last_result',
        'verify_next_time',
        'verify_damaged',
        'verify_overdue',
        'verify_oldest_time',
      ].sort(),
    );
    await until(async () => (await readStatusFile(join(t.base, 'status')))!.mtimeMs > first.mtimeMs, 5000);
  });

  it('allows one scheduler per base dir', async () => {
    const t = await setup({ schedules, jobs: {} });
    await t.start();
    await expect(
      Scheduler.start({ configPath: t.configPath, logger, runner: t.runner }),
    ).rejects.toMatchObject({
      code: 'LOCKED',
      message: expect.stringContaining('another scheduler is already running'),
    });
  });

  it('stops: terminates running backups, leaves no new revision and releases the lock', async () => {
    const t = await setup({ schedules, jobs: { a: fileJob('a') } });
    t.runner.delayMs = () => 60_000;
    const s = await t.start();
    await until(() => s.jobs()[0]!.status === 'running');
    const before = Date.now();
    await s.stop();
    expect(Date.now() - before).toBeLessThan(2000);
    expect((await readdirNames(join(t.base, 'a'))).filter((n) => n.endsWith('.rev'))).toEqual([]);
    expect(s.runJob('a')).toBe('stopping');
    // The lock is free again.
    const again = await t.start();
    expect(again.jobs()).toHaveLength(1);
  });

  it('stops when its signal is aborted', async () => {
    const t = await setup({ schedules, jobs: {} });
    const controller = new AbortController();
    const s = await t.start({ signal: controller.signal });
    controller.abort();
    await s.done;
    expect(s.isStopping).toBe(true);
  });
});

async function readdirNames(dir: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  return readdir(dir).catch(() => []);
}

afterEach(async () => {
  await rm(join(tmpdir(), 'nothing'), { force: true });
});
