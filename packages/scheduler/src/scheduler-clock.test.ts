import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newRevisionId, writeRevisionFile } from '@backy/core';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { evaluateStatus } from './check.js';
import type { JobRequest, JobRunner, RunResult } from './runner.js';
import { spreadOffsetMs } from './schedule-math.js';
import { Scheduler, type SchedulerOptions } from './scheduler.js';
import { readStatusFile } from './status-file.js';
import { FakeClock, T0, until, writeStampedRevision } from './test-helpers.js';

// The daemon itself on a fake clock: simulated weeks in a second, real files on disk.

const logger = pino({ level: 'silent' });
const H = 3600_000;
const D = 24 * H;

/** Backs up instantly by writing a revision stamped with the fake time. */
class ClockedRunner implements JobRunner {
  runs: { job: string; at: number; tags: string[] }[] = [];
  constructor(private readonly clock: FakeClock) {}
  async backup(request: JobRequest & { tags: string[] }): Promise<RunResult> {
    const at = this.clock.now();
    this.runs.push({ job: request.job, at, tags: request.tags });
    await writeStampedRevision(request.dir, at, request.tags);
    return { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };
  }
  async expire(): Promise<RunResult> {
    return { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };
  }
  async purge(): Promise<RunResult> {
    return { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };
  }
  async copy(): Promise<RunResult> {
    return { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };
  }
  async callback(_request: JobRequest): Promise<RunResult> {
    return { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };
  }
}

const idle = (s: Scheduler) =>
  until(() => s.jobs().every((j) => j.status === 'waiting' || j.status === 'failed'), 'idle');
const FAILED: RunResult = { ok: false, exitCode: null, signal: 'SIGTERM', stderr: '', durationMs: 1 };

async function runUntil(s: Scheduler, clock: FakeClock, limit: number) {
  await idle(s);
  while (clock.fireNext(limit)) await idle(s);
  clock.time = limit;
}

async function setup(jobs: string[], global: Record<string, unknown> = {}) {
  const root = await mkdtemp(join(tmpdir(), 'backy-clock-'));
  const configPath = join(root, 'backy.conf');
  await writeFile(
    configPath,
    stringify({
      global: { 'base-dir': join(root, 'base'), 'status-interval': '6h', ...global },
      schedules: {
        s: {
          hourly: { interval: '1h', keep: 24 },
          daily: { interval: '1d', keep: 7 },
          weekly: { interval: '7d', keep: 4 },
        },
      },
      jobs: Object.fromEntries(
        jobs.map((j) => [j, { schedule: 's', source: { type: 'file', filename: `/img/${j}` } }]),
      ),
    }),
  );
  await mkdir(join(root, 'base'), { recursive: true });
  const clock = new FakeClock();
  const runner = new ClockedRunner(clock);
  const start = (extra: Partial<SchedulerOptions> = {}) =>
    Scheduler.start({ configPath, logger, runner, clock, maxSleepMs: 7 * D, ...extra });
  return { clock, runner, start, statusFile: join(root, 'base', 'status') };
}

describe('Scheduler on a fake clock', () => {
  it('runs two weeks of hourly, daily and weekly backups on the jobs slots', async () => {
    const t = await setup(['web01', 'db1']);
    const s = await t.start();
    await runUntil(s, t.clock, T0 + 14 * D);
    for (const job of ['web01', 'db1']) {
      const runs = t.runner.runs.filter((r) => r.job === job);
      const count = (tag: string) => runs.filter((r) => r.tags.includes(tag)).length;
      // The first run at start carries every tag; then one per slot.
      expect(runs[0]).toEqual({ job, at: T0, tags: ['hourly', 'daily', 'weekly'] });
      expect(count('hourly')).toBeGreaterThanOrEqual(14 * 24);
      expect(count('hourly')).toBeLessThanOrEqual(14 * 24 + 1);
      expect(count('daily')).toBeGreaterThanOrEqual(14);
      expect(count('daily')).toBeLessThanOrEqual(15);
      expect(count('weekly')).toBeGreaterThanOrEqual(2);
      expect(count('weekly')).toBeLessThanOrEqual(3);
      for (const r of runs.slice(1)) expect((r.at - T0) % H).toBe(spreadOffsetMs(job, 3600));
      // Always within SLA (1.5 h) while running.
      expect(Math.max(...runs.slice(1).map((r, i) => r.at - runs[i]!.at))).toBeLessThanOrEqual(H);
    }
    await s.stop();
  });

  it('catches up exactly the missed tags after three days down, then returns to its slots', async () => {
    const t = await setup(['web01']);
    let s = await t.start();
    await runUntil(s, t.clock, T0 + 2 * D + 5 * H);
    await s.stop();
    const before = t.runner.runs.length;
    // Down for three days: hourly and daily slots are missed (weekly depends on where its slot lies).
    t.clock.time = T0 + 5 * D + 5 * H + 123_456;
    s = await t.start();
    // The catch-up started at once (a running job does not count as overdue).
    expect(s.jobs()[0]!.status).toBe('running');
    await runUntil(s, t.clock, T0 + 6 * D);
    const after = t.runner.runs.slice(before);
    const weeklySlot = T0 + ((spreadOffsetMs('web01', 7 * 86400) - (T0 % (7 * D)) + 7 * D) % (7 * D));
    const weeklyMissed = weeklySlot > T0 && weeklySlot <= T0 + 5 * D + 5 * H + 123_456;
    expect(after[0]).toEqual({
      job: 'web01',
      at: T0 + 5 * D + 5 * H + 123_456,
      tags: weeklyMissed ? ['hourly', 'daily', 'weekly'] : ['hourly', 'daily'],
    });
    for (const r of after.slice(1)) expect((r.at - T0) % H).toBe(spreadOffsetMs('web01', 3600));
    expect(s.jobs()[0]!.sla).toBe('OK');
    await s.stop();
  });

  it('stop() waits stopTimeoutMs on its own clock for work that ignores the termination', async () => {
    const t = await setup(['web01']);
    let release!: () => void;
    const stuck = new Promise<void>((resolve) => {
      release = resolve;
    });
    let backingUp = false;
    t.runner.backup = async () => {
      backingUp = true;
      await stuck; // deaf to the abort signal, like a child stuck in the kernel
      return FAILED;
    };
    const s = await t.start({ stopTimeoutMs: 30_000 });
    await until(() => backingUp, 'the backup');
    let stopped = false;
    const stopping = s.stop().then(() => {
      stopped = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(stopped).toBe(false);
    // The only timer left is the stop timeout, on the fake clock: a real timer would not be here.
    expect(t.clock.fireNext(T0 + 29_999)).toBe(false);
    expect(t.clock.fireNext(T0 + 30_000)).toBe(true);
    await stopping;
    expect(t.clock.now()).toBe(T0 + 30_000);
    release();
  });

  it('terminates a completion callback after callbackTimeoutMs on its own clock', async () => {
    const t = await setup(['web01'], { 'backup-completed-callback': '/usr/local/bin/notify' });
    const terminatedAt: number[] = [];
    let calledBack = false;
    t.runner.callback = (request: JobRequest): Promise<RunResult> => {
      calledBack = true;
      return new Promise((resolve) =>
        request.signal.addEventListener('abort', () => {
          terminatedAt.push(t.clock.now());
          resolve(FAILED);
        }),
      );
    };
    const s = await t.start({ callbackTimeoutMs: 60_000 });
    await until(() => calledBack, 'the callback');
    expect(t.clock.fireNext(T0 + 59_999)).toBe(false);
    expect(t.clock.fireNext(T0 + 60_000)).toBe(true);
    await idle(s);
    expect(terminatedAt).toEqual([T0 + 60_000]);
    await s.stop();
  });
});

describe('what failing runs come to, on a fake clock', () => {
  it('counts failures in a row with their reason, calls back after each, and is OK again once fixed', async () => {
    const t = await setup(['web01'], { 'backup-completed-callback': '/usr/local/bin/notify' });
    let broken = true;
    const backup = t.runner.backup.bind(t.runner);
    t.runner.backup = async (request) => {
      if (!broken) return backup(request);
      t.runner.runs.push({ job: request.job, at: t.clock.now(), tags: request.tags });
      return {
        ok: false,
        exitCode: 1,
        signal: null,
        stderr: 'backy: warning: something else\nbacky: error: source /img/web01: file not found\n',
        durationMs: 1,
      };
    };
    const calls: Record<string, string>[] = [];
    t.runner.callback = async (request) => {
      calls.push({ ...(request as unknown as { env: Record<string, string> }).env });
      return { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };
    };
    const check = (s: Scheduler) =>
      evaluateStatus('/s', { jobs: s.jobs(), mtimeMs: t.clock.now() }, t.clock.now(), {
        configuredJobs: ['web01'],
      });
    const s = await t.start();
    await runUntil(s, t.clock, T0 + 60_000);
    expect(s.jobs()[0]).toMatchObject({
      status: 'failed',
      last_outcome: 'failed',
      last_reason: 'source /img/web01: file not found',
      consecutive_failures: 1,
      last_success: null,
      last_run: new Date(T0).toISOString(),
    });
    expect(check(s)).toEqual({
      exitCode: 1,
      lines: [
        'WARNING: 1 jobs whose last run failed',
        'web01: backup failed: source /img/web01: file not found; no successful backup yet',
      ],
    });
    expect(calls).toEqual([
      {
        BACKY_JOB: 'web01',
        BACKY_TAGS: 'hourly,daily,weekly',
        BACKY_OUTCOME: 'failed',
        BACKY_REASON: 'source /img/web01: file not found',
        BACKY_CONSECUTIVE_FAILURES: '1',
        BACKY_LAST_SUCCESS: '',
      },
    ]);
    // Retried after 2 and 4 more minutes (the back-off): the third failure in a row is CRITICAL.
    await runUntil(s, t.clock, T0 + 7 * 60_000);
    expect(t.runner.runs.map((r) => r.at - T0)).toEqual([0, 120_000, 360_000]);
    expect(s.jobs()[0]!.consecutive_failures).toBe(3);
    expect(check(s)).toEqual({
      exitCode: 2,
      lines: [
        'CRITICAL: 1 jobs failed 3 or more times in a row',
        'web01: backup failed (3 times in a row): source /img/web01: file not found; no successful backup yet',
      ],
    });
    expect(calls.map((c) => [c.BACKY_OUTCOME, c.BACKY_CONSECUTIVE_FAILURES])).toEqual([
      ['failed', '1'],
      ['failed', '2'],
      ['failed', '3'],
    ]);
    // A restart remembers: the status file written on stop carries the record.
    await s.stop();
    const s2 = await t.start();
    expect(s2.jobs()[0]).toMatchObject({ last_outcome: 'failed', consecutive_failures: 3 });
    // Fixed: the next run (8 more minutes of back-off) succeeds and check is OK.
    broken = false;
    await runUntil(s2, t.clock, T0 + 30 * 60_000);
    expect(s2.jobs()[0]).toMatchObject({
      status: 'waiting',
      last_outcome: 'ok',
      last_reason: null,
      consecutive_failures: 0,
    });
    expect(s2.jobs()[0]!.last_success).not.toBeNull();
    expect(check(s2)).toEqual({ exitCode: 0, lines: ['OK: 1 jobs within SLA'] });
    expect(calls.at(-1)).toMatchObject({
      BACKY_OUTCOME: 'ok',
      BACKY_REASON: '',
      BACKY_CONSECUTIVE_FAILURES: '0',
    });
    await s2.stop();
    const written = await readStatusFile(t.statusFile);
    expect(written!.jobs[0]).toMatchObject({ last_outcome: 'ok', consecutive_failures: 0 });
  });

  it('a backup whose new revision failed verification is verification-failed; a failed copy is copy-failed', async () => {
    const t = await setup(['web01'], { 'copy-to': '/mnt/offsite' });
    let distrust = true;
    t.runner.backup = async (request) => {
      const at = t.clock.now();
      t.runner.runs.push({ job: request.job, at, tags: request.tags });
      const uuid = newRevisionId();
      await writeRevisionFile(join(request.dir, `${uuid}.rev`), {
        uuid,
        timestamp: new Date(at).toISOString(),
        parent: null,
        tags: request.tags,
        trust: distrust ? 'distrusted' : 'trusted',
        size: 0,
        backend_type: 'chunked',
        stats: {
          bytes_written: 0,
          bytes_read: 0,
          duration: 1,
          chunks_written: 0,
          chunks_reused: 0,
          chunks_zero: 0,
        },
        verification: {
          method: 'full',
          ok: !distrust,
          chunks_checked: 1,
          chunks_total: 1,
          mismatches: distrust ? [0] : [],
          timestamp: new Date(at).toISOString(),
        },
      });
      return { ok: !distrust, exitCode: distrust ? 1 : 0, signal: null, stderr: '', durationMs: 1 };
    };
    t.runner.copy = async () => ({
      ok: false,
      exitCode: 1,
      signal: null,
      stderr: 'backy: error: the target has no archive config\n',
      durationMs: 1,
    });
    const s = await t.start();
    await runUntil(s, t.clock, T0 + 60_000);
    const first = s.jobs()[0]!;
    expect(first.last_outcome).toBe('verification-failed');
    expect(first.last_reason).toMatch(/^revision \S+ does not match its source and is distrusted$/);
    expect(first.consecutive_failures).toBe(1);
    distrust = false;
    // The distrusted revision carries its tags, so the next run is at the next hourly slot.
    await runUntil(s, t.clock, T0 + H + 60_000);
    expect(t.runner.runs).toHaveLength(2);
    expect(s.jobs()[0]).toMatchObject({
      status: 'waiting',
      last_outcome: 'copy-failed',
      last_reason: '/mnt/offsite/web01: the target has no archive config',
      consecutive_failures: 2,
      last_success: new Date(t.runner.runs[1]!.at).toISOString(),
    });
    const result = evaluateStatus('/s', { jobs: s.jobs(), mtimeMs: t.clock.now() }, t.clock.now());
    expect(result).toEqual({
      exitCode: 1,
      lines: [
        'WARNING: 1 jobs whose last run failed',
        'web01: copy failed (2 times in a row): /mnt/offsite/web01: the target has no archive config',
      ],
    });
    await s.stop();
  });
});
