import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  parseCentralConfig,
  type RevisionFacts,
  readRevisions,
  verifyJobOf,
  writeRevisionFile,
} from '@backy/core';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { EMPTY_SUMMARY } from './archive-state.js';
import { checkStatusFile } from './check.js';
import { nextJobToStart } from './job-plan.js';
import { type JobRuntime, JobTable } from './job-table.js';
import type { JobRequest, JobRunner, RunResult } from './runner.js';
import { spreadOffsetMs } from './schedule-math.js';
import { Scheduler } from './scheduler.js';
import type { JobStatus } from './status-file.js';
import { FakeClock, jobStatus, T0, until, writeStampedRevision } from './test-helpers.js';
import {
  hasOutdated,
  nextVerifyToStart,
  overdueRevisions,
  queueDueVerifies,
  verifyDueTime,
  verifyOffsetMs,
} from './verify-job.js';
import { runVerifyOnce, type VerifyRunContext } from './verify-run.js';
import { summarizeVerification } from './verify-summary.js';

// The scheduled verify jobs: their planning at a fake `now`, the daemon running them on a fake clock,
// and what `backy check` makes of their findings.

const logger = pino({ level: 'silent' });
const H = 3600_000;
const D = 24 * H;
const WEEKLY = { interval: 7 * 86400, outdatedAfter: 14 * 86400 };

function facts(
  time: number,
  verifiedAt: number | null,
  trust: RevisionFacts['trust'] = 'trusted',
): RevisionFacts {
  return {
    uuid: `r${time}-${verifiedAt}`,
    time,
    tags: ['daily'],
    duration: 1,
    trust,
    verification: null,
    snapshot: null,
    work: { bytesRead: null, bytesWritten: null, chunksWritten: null, chunksReused: null },
    verifiedAt,
  };
}

function jobs(...names: string[]): JobRuntime[] {
  const table = new JobTable({ log: logger, slowThresholdSeconds: 600 });
  table.apply(
    parseCentralConfig(
      {
        schedules: { s: { daily: { interval: '1d', keep: 7 } } },
        jobs: Object.fromEntries(names.map((n) => [n, { schedule: 's', source: { type: 'file' } }])),
      },
      'test.conf',
    ),
  );
  return [...table.values()];
}

/** A job whose archive has these revisions. */
function withRevisions(job: JobRuntime, revisions: RevisionFacts[]): JobRuntime {
  job.summary = { ...EMPTY_SUMMARY, count: revisions.length, verify: summarizeVerification(revisions) };
  return job;
}

describe('verify job planning', () => {
  it('takes the central default, a job may change or switch it off', () => {
    const loaded = parseCentralConfig(
      {
        global: { verify: { 'outdated-after': '60d' } },
        schedules: { s: { daily: { interval: '1d', keep: 7 } } },
        jobs: {
          a: { schedule: 's', source: { type: 'file' } },
          b: { schedule: 's', source: { type: 'file' }, verify: { interval: '1d' } },
          c: { schedule: 's', source: { type: 'file' }, verify: false },
        },
      },
      'test.conf',
    );
    expect(verifyJobOf(loaded.config, 'a')).toEqual({ interval: 7 * 86400, outdatedAfter: 60 * 86400 });
    expect(verifyJobOf(loaded.config, 'b')).toEqual({ interval: 86400, outdatedAfter: 60 * 86400 });
    expect(verifyJobOf(loaded.config, 'c')).toBeNull();
    expect(() => parseCentralConfig({ global: { verify: { interval: 'often' } } }, 'test.conf')).toThrow(
      /global\.verify: interval: invalid duration "often"/,
    );
    expect(() => parseCentralConfig({ global: { verify: { every: '1d' } } }, 'test.conf')).toThrow(
      /global\.verify: unknown key "every"/,
    );
  });

  it('is due for revisions never verified or verified longer than outdated-after ago', () => {
    const now = T0 + 100 * D;
    const recent = summarizeVerification([facts(T0, now - 13 * D), facts(T0 + D, now - D)]);
    expect(hasOutdated(recent, WEEKLY, now)).toBe(false);
    const old = summarizeVerification([facts(T0, now - 14 * D), facts(T0 + D, now - D)]);
    expect(hasOutdated(old, WEEKLY, now)).toBe(true);
    const fresh = summarizeVerification([facts(T0, now - D), facts(now - H, null)]);
    expect(hasOutdated(fresh, WEEKLY, now)).toBe(true);
    // Unverified for longer than outdated-after + interval (a never verified one since it was made).
    const behind = summarizeVerification([
      facts(T0, now - 22 * D),
      facts(now - 30 * D, null),
      facts(now - H, null),
    ]);
    expect(overdueRevisions(behind, WEEKLY, now)).toBe(2);
    // Unless the daemon began verifying only lately (an upgrade): then it counts from that moment.
    expect(overdueRevisions(behind, WEEKLY, now, now - 2 * D)).toBe(1);
  });

  it('runs on slots spread by the job name, apart from the backups, and skips a slot with nothing to do', () => {
    const names = Array.from({ length: 50 }, (_, i) => `vm${i}`);
    const all = names.map((n) => withRevisions(jobs(n)[0]!, [facts(T0 - 20 * D, null)]));
    // Never verified: each job's first run is at its first slot after the daemon saw it, not at once.
    const next = queueDueVerifies(all, T0, () => WEEKLY);
    expect(all.every((j) => j.verify.state === 'idle')).toBe(true);
    const dues = all.map((j) => verifyDueTime(j, WEEKLY, T0)!);
    for (const [i, due] of dues.entries()) {
      expect(due % (7 * D)).toBe(verifyOffsetMs(names[i]!, 7 * 86400));
      expect(due).toBeGreaterThan(T0);
      expect(due).toBeLessThanOrEqual(T0 + 7 * D);
    }
    expect(next).toBe(Math.min(...dues));
    // Spread over the week: 50 jobs fall into (nearly) as many different hours.
    expect(new Set(dues.map((d) => Math.floor(d / H))).size).toBeGreaterThan(45);
    // The verify slots are not the backups' (the daily backup of vm0 lies elsewhere in the day).
    expect(verifyOffsetMs('vm0', 86400)).not.toBe(spreadOffsetMs('vm0', 86400));
    queueDueVerifies(all, T0 + 7 * D, () => WEEKLY);
    expect(all.every((j) => j.verify.state === 'queued')).toBe(true);
    // At a due slot with every revision verified recently, nothing runs: the slot counts as done.
    const monthly = { interval: 7 * 86400, outdatedAfter: 30 * 86400 };
    const [idle] = jobs('idle');
    withRevisions(idle!, [facts(T0 - 20 * D, T0 - 8 * D)]);
    expect(verifyDueTime(idle!, monthly, T0)).toBeLessThanOrEqual(T0);
    queueDueVerifies([idle!], T0, () => monthly);
    expect(idle!.verify.state).toBe('idle');
    expect(idle!.verify.lastRun).toBe(T0);
    expect(verifyDueTime(idle!, monthly, T0)).toBeGreaterThan(T0);
  });

  it('never verifies a job before its first slot after the daemon saw it, nor a job without revisions', () => {
    const [empty, fresh] = jobs('empty', 'fresh');
    expect(queueDueVerifies([empty!], T0, () => WEEKLY)).toBe(Infinity);
    withRevisions(fresh!, [facts(T0 - 100 * D, null)]);
    const next = queueDueVerifies([fresh!], T0, () => WEEKLY);
    expect(fresh!.verify.state).toBe('idle');
    expect(next % (7 * D)).toBe(verifyOffsetMs('fresh', 7 * 86400));
    expect(next).toBeGreaterThan(T0);
    queueDueVerifies([fresh!], next, () => WEEKLY);
    expect(fresh!.verify.state).toBe('queued');
  });

  it('shares the workers with backups, backups first, and never overlaps the job’s own backup', () => {
    const [a, b, c] = jobs('a', 'b', 'c');
    for (const j of [a, b, c]) j!.verify.state = 'queued';
    // A queued backup of `a` goes first; `a`'s verify waits while its backup runs.
    a!.state = 'queued';
    expect(nextJobToStart([a!, b!, c!], 2)).toBe('a');
    a!.state = 'running';
    expect(nextVerifyToStart([a!, b!, c!], 2)?.name).toBe('b');
    b!.verify.state = 'running';
    // Two workers, both busy.
    expect(nextVerifyToStart([a!, b!, c!], 2)).toBeNull();
    a!.state = 'waiting';
    // A verify counts as slow: with 2 workers at most one verifies, so a backup always finds one.
    expect(nextVerifyToStart([a!, b!, c!], 2)).toBeNull();
    expect(nextVerifyToStart([a!, b!, c!], 4)?.name).toBe('a');
    // The backup of a job being verified waits for it, and its worker counts.
    b!.state = 'queued';
    c!.state = 'queued';
    expect(nextJobToStart([a!, b!, c!], 2)).toBe('c');
    expect(nextJobToStart([a!, b!, c!], 1)).toBeNull();
  });
});

const OK: RunResult = { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };
const tick = () => new Promise((r) => setImmediate(r));

/** Backs up and verifies on the fake clock, as the real commands do to the revision files; notes overlaps. */
class ClockedRunner implements JobRunner {
  backups: { job: string; at: number }[] = [];
  verifies: { job: string; at: number; reread: number }[] = [];
  active = new Set<string>();
  overlaps = 0;
  /** Runs inside each verify, before it re-reads anything (e.g. reports progress and waits). */
  duringVerify: ((request: JobRequest) => Promise<void>) | null = null;
  constructor(private readonly clock: FakeClock) {}
  private async busy(job: string, work: () => Promise<void>) {
    if (this.active.has(job)) this.overlaps++;
    this.active.add(job);
    await tick();
    await work();
    await tick();
    this.active.delete(job);
  }
  async backup(request: JobRequest & { tags: string[] }): Promise<RunResult> {
    const at = this.clock.now();
    this.backups.push({ job: request.job, at });
    await this.busy(request.job, async () => {
      await writeStampedRevision(request.dir, at, request.tags);
    });
    return OK;
  }
  async verify(request: JobRequest & { outdatedAfter: number }): Promise<RunResult> {
    const at = this.clock.now();
    let reread = 0;
    await this.busy(request.job, async () => {
      await this.duringVerify?.(request);
      for (const rev of await readRevisions(request.dir)) {
        const last = rev.verified_at == null ? null : Date.parse(rev.verified_at);
        if (last != null && at - last < request.outdatedAfter * 1000) continue;
        reread++;
        await writeRevisionFile(join(request.dir, `${rev.uuid}.rev`), {
          ...rev,
          trust: 'verified',
          verified_at: new Date(at).toISOString(),
        });
      }
    });
    this.verifies.push({ job: request.job, at, reread });
    return OK;
  }
  async expire(): Promise<RunResult> {
    return OK;
  }
  async purge(): Promise<RunResult> {
    return OK;
  }
  async copy(): Promise<RunResult> {
    return OK;
  }
  async callback(): Promise<RunResult> {
    return OK;
  }
}

const idle = (s: Scheduler) =>
  until(
    () =>
      s
        .jobs()
        .every(
          (j) =>
            (j.status === 'waiting' || j.status === 'failed') &&
            ['waiting', 'off'].includes(j.verify_status!),
        ),
    'idle',
  );

describe('a verify asked for (the API) while the archive is busy', () => {
  it('keeps its revision and runs it again at the busy retry, not at the next scheduled slot', async () => {
    const [job] = jobs('vm');
    withRevisions(job!, [facts(T0, T0)]);
    let now = T0 + D;
    const calls: (string | undefined)[] = [];
    let exitCode = 69;
    const runner = {
      verify: async (request: JobRequest & { revision?: string }) => {
        calls.push(request.revision);
        return { ok: exitCode === 0, exitCode, durationMs: 10, error: null } as unknown as RunResult;
      },
    } as unknown as JobRunner;
    const context = {
      runner,
      clock: { now: () => now } as unknown as VerifyRunContext['clock'],
      log: logger,
      stopSignal: new AbortController().signal,
      reread: async () => {},
    };
    const v = job!.verify;
    v.revision = null;
    await runVerifyOnce(job!, { outdatedAfter: 0, revision: 'r1' }, context);
    expect(calls).toEqual(['r1']);
    // Still asked for, and nothing else may take its place meanwhile.
    expect([v.state, v.revision]).toEqual(['idle', 'r1']);
    const retry = v.busyRetryAt!;
    expect(retry).toBeGreaterThan(now);
    // Settings null (no scheduled verify job): the request alone queues it, at the retry time.
    expect(queueDueVerifies([job!], now, () => null)).toBe(retry);
    expect(v.state).toBe('idle');
    now = retry;
    queueDueVerifies([job!], now, () => null);
    expect(v.state).toBe('queued');
    exitCode = 0;
    v.state = 'running';
    v.revision = null;
    await runVerifyOnce(job!, { outdatedAfter: 0, revision: 'r1' }, context);
    expect(calls).toEqual(['r1', 'r1']);
    expect([v.state, v.revision, v.lastResult]).toEqual(['idle', null, 'ok']);
  });
});

describe('the daemon with verify jobs, on a fake clock', () => {
  it('re-reads every revision at least every outdated-after + interval, on the verify slots, never during a backup', async () => {
    const root = await mkdtemp(join(tmpdir(), 'backy-verify-clock-'));
    const configPath = join(root, 'backy.conf');
    const names = ['web01', 'db1', 'mail'];
    await writeFile(
      configPath,
      stringify({
        global: { 'base-dir': join(root, 'base'), 'status-interval': '6h', 'worker-limit': 2 },
        schedules: { s: { daily: { interval: '1d', keep: 100 } } },
        jobs: Object.fromEntries(
          names.map((j) => [
            j,
            {
              schedule: 's',
              source: { type: 'file', filename: `/img/${j}` },
              verify: { interval: '7d', 'outdated-after': '14d' },
            },
          ]),
        ),
      }),
    );
    await mkdir(join(root, 'base'), { recursive: true });
    const clock = new FakeClock();
    const runner = new ClockedRunner(clock);
    const s = await Scheduler.start({ configPath, logger, runner, clock, maxSleepMs: 7 * D });
    const end = T0 + 6 * 7 * D;
    await idle(s);
    let worst = 0;
    let checkedDay = -1;
    while (clock.fireNext(end)) {
      await idle(s);
      // Each revision's age since its last verification (or its making) stays within 21 days.
      if (Math.floor(clock.time / D) === checkedDay) continue;
      checkedDay = Math.floor(clock.time / D);
      for (const name of names)
        for (const rev of await readRevisions(join(root, 'base', name))) {
          const since = rev.verified_at == null ? Date.parse(rev.timestamp) : Date.parse(rev.verified_at);
          worst = Math.max(worst, clock.time - since);
        }
    }
    expect(worst).toBeLessThanOrEqual(21 * D);
    expect(runner.overlaps).toBe(0);
    for (const name of names) {
      const runs = runner.verifies.filter((v) => v.job === name);
      // About one a week over 6 weeks, each at the job's own verify slot.
      expect(runs.length).toBeGreaterThanOrEqual(5);
      expect(runs.length).toBeLessThanOrEqual(6);
      for (const v of runs) expect(v.at % (7 * D)).toBe(verifyOffsetMs(name, 7 * 86400));
      // Each run re-reads the week's new revisions and those it read two runs ago: about half, not all.
      const total = (await readRevisions(join(root, 'base', name))).length;
      expect(Math.max(...runs.map((v) => v.reread))).toBeLessThanOrEqual(Math.ceil(total / 2) + 7);
    }
    const status = s.jobs().find((j) => j.job === 'web01')!;
    expect(status.verify_status).toBe('waiting');
    expect(status.verify_last_result).toBe('ok');
    expect(status.verify_overdue).toBe(0);
    await s.stop();
  });
});

describe('a running verify job', () => {
  it("shows its progress where a backup's shows, and none once it is done", async () => {
    const root = await mkdtemp(join(tmpdir(), 'backy-verify-progress-'));
    const configPath = join(root, 'backy.conf');
    await writeFile(
      configPath,
      stringify({
        global: { 'base-dir': join(root, 'base'), 'status-interval': '6h' },
        schedules: { s: { daily: { interval: '1d', keep: 10 } } },
        jobs: {
          vm: { schedule: 's', source: { type: 'file', filename: '/img/vm' }, verify: { interval: '1d' } },
        },
      }),
    );
    await mkdir(join(root, 'base'), { recursive: true });
    const clock = new FakeClock();
    const runner = new ClockedRunner(clock);
    let release: () => void = () => {};
    let reported = false;
    runner.duringVerify = async (request) => {
      request.onProgress?.({ phase: 'verify', done: 1024, total: 4096 });
      reported = true;
      await new Promise<void>((r) => {
        release = r;
      });
    };
    const s = await Scheduler.start({ configPath, logger, runner, clock, maxSleepMs: D });
    try {
      const settled = () =>
        reported || s.jobs().every((j) => j.status === 'waiting' && j.verify_status === 'waiting');
      await until(settled, 'idle');
      while (!reported && clock.fireNext(T0 + 3 * D)) await until(settled, 'idle or verifying');
      expect(reported).toBe(true);
      const running = s.jobs().find((j) => j.job === 'vm')!;
      expect(running.verify_status).toBe('running');
      expect(running.progress).toMatchObject({ phase: 'verify', done: 1024, total: 4096, eta_seconds: null });
      release();
      await idle(s);
      expect(s.jobs().find((j) => j.job === 'vm')!.progress).toBeUndefined();
      expect(runner.verifies.map((v) => v.job)).toEqual(['vm']);
    } finally {
      release();
      await s.stop();
    }
  });
});

describe('backy check with verify jobs', () => {
  const job = (name: string, extra: Partial<JobStatus> = {}): JobStatus =>
    jobStatus(name, { verify_status: 'waiting', verify_damaged: '', verify_overdue: 0, ...extra });
  async function check(jobs: JobStatus[]) {
    const dir = await mkdtemp(join(tmpdir(), 'backy-verify-check-'));
    const path = join(dir, 'status');
    await writeFile(path, stringify(jobs));
    return checkStatusFile(path);
  }

  it('is CRITICAL naming the job and revision a verify found damaged, WARNING for revisions verified too long ago', async () => {
    expect(await check([job('a'), job('b')])).toEqual({ exitCode: 0, lines: ['OK: 2 jobs within SLA'] });
    expect(
      await check([
        job('a'),
        job('b', { verify_overdue: 3, verify_oldest_time: '2025-11-01T00:00:00.000Z' }),
      ]),
    ).toEqual({
      exitCode: 1,
      lines: [
        'WARNING: 1 jobs with revisions not verified in time',
        'b: 3 revisions not verified within outdated-after + interval (oldest: 2025-11-01 00:00:00 UTC)',
      ],
    });
    const damaged = await check([
      job('a', { last_trust: 'distrusted' }),
      job('b', { verify_damaged: 'rev-1, rev-2' }),
    ]);
    expect(damaged.exitCode).toBe(2);
    expect(damaged.lines[0]).toBe('CRITICAL: 1 jobs with revisions found damaged by verify');
    expect(damaged.lines).toContain('b: revision rev-1 is damaged (found by verify)');
    expect(damaged.lines).toContain('b: revision rev-2 is damaged (found by verify)');
    // The backups' own finding stays among the details.
    expect(damaged.lines.some((l) => l.startsWith('a: newest revision is distrusted'))).toBe(true);
    // A CRITICAL of the backups keeps its summary and gains the verify lines.
    const late = await check([
      job('a', { sla: 'TOO OLD', sla_overdue: 60 }),
      job('b', { verify_damaged: 'rev-1' }),
    ]);
    expect(late.exitCode).toBe(2);
    expect(late.lines[0]).toBe('CRITICAL: 1 jobs not within SLA');
    expect(late.lines).toContain('b: revision rev-1 is damaged (found by verify)');
  });
});
