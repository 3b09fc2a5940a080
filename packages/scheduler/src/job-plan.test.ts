import { parseCentralConfig } from '@backy/core';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { EMPTY_SUMMARY } from './archive-state.js';
import { lastRuns, nextJobToStart, planJob, queueDueJobs, tagsToRun } from './job-plan.js';
import { type JobRuntime, JobTable } from './job-table.js';

// The planning over the daemon's jobs at a fake `now`: no files, no timers.

const H = 3600_000;
const D = 24 * H;
const T0 = Date.UTC(2026, 0, 5);

function jobs(...names: string[]): JobRuntime[] {
  const table = new JobTable({ log: pino({ level: 'silent' }), slowThresholdSeconds: 600 });
  table.apply(
    parseCentralConfig(
      {
        schedules: { s: { hourly: { interval: '1h', keep: 24 }, daily: { interval: '1d', keep: 7 } } },
        jobs: Object.fromEntries(names.map((n) => [n, { schedule: 's', source: { type: 'file' } }])),
      },
      'test.conf',
    ),
  );
  return [...table.values()];
}

describe('job planning', () => {
  it("takes each tag's newest run from the archive or from the daemon's own runs", () => {
    const [job] = jobs('a');
    job!.summary = { ...EMPTY_SUMMARY, lastRuns: { hourly: T0, daily: T0 - 2 * H } };
    // Expiry removed the daily revision this daemon made an hour ago.
    job!.ranAt = { hourly: T0 - H, daily: T0 - H };
    expect(lastRuns(job!)).toEqual({ hourly: T0, daily: T0 - H });
  });

  it('plans a new job at once with every tag, and a failed one after its backoff', () => {
    const [job] = jobs('a');
    expect(planJob(job!, T0)).toEqual({ time: T0, tags: ['hourly', 'daily'] });
    job!.failures = 1;
    job!.lastFailure = T0;
    expect(planJob(job!, T0 + 1000)).toEqual({ time: T0 + 120_000, tags: ['hourly', 'daily'] });
  });

  it('runs the planned tags after `run JOB`, else the tags due now without the backoff', () => {
    const [job] = jobs('a');
    // The daily tag ran just now, the hourly one two hours ago.
    job!.summary = { ...EMPTY_SUMMARY, lastRuns: { hourly: T0, daily: T0 + 2 * H } };
    job!.failures = 3;
    job!.lastFailure = T0;
    expect(tagsToRun(job!, T0 + 2 * H)).toEqual(['hourly']);
    job!.plan = { time: T0 + 2 * D, tags: ['hourly', 'daily'] };
    job!.runNow = true;
    expect(tagsToRun(job!, T0 + 2 * H)).toEqual(['hourly', 'daily']);
  });

  it('queues the idle jobs that are due or asked for, and returns when the next one is due', () => {
    const [due, asked, later, running] = jobs('due', 'asked', 'later', 'running');
    due!.plan = { time: T0 - 5000, tags: ['hourly'] };
    asked!.plan = { time: T0 + 3 * H, tags: ['hourly'] };
    asked!.runNow = true;
    later!.plan = { time: T0 + H, tags: ['hourly'] };
    later!.state = 'failed';
    running!.plan = { time: T0 - H, tags: ['hourly'] };
    running!.state = 'running';
    expect(queueDueJobs([due!, asked!, later!, running!], T0)).toBe(T0 + H);
    expect(due).toMatchObject({ state: 'queued', queuedAt: T0 - 5000 });
    expect(asked).toMatchObject({ state: 'queued', queuedAt: T0 });
    expect(later!.state).toBe('failed');
    expect(running!.state).toBe('running');
    expect(queueDueJobs([running!], T0)).toBe(Infinity);
  });

  it('starts the earliest queued job while a worker is free, and keeps one for fast jobs', () => {
    const [slow1, slow2, fast, busy] = jobs('slow1', 'slow2', 'fast', 'busy');
    for (const [job, at] of [
      [slow1!, T0],
      [slow2!, T0 + 1],
      [fast!, T0 + 2],
    ] as const)
      Object.assign(job, { state: 'queued', queuedAt: at, slow: job !== fast });
    expect(nextJobToStart([slow1!, slow2!, fast!], 2)).toBe('slow1');
    slow1!.state = 'running';
    // One of two workers is the slow jobs' share: the next one goes to the fast job.
    expect(nextJobToStart([slow1!, slow2!, fast!], 2)).toBe('fast');
    busy!.state = 'finishing';
    expect(nextJobToStart([slow1!, slow2!, fast!, busy!], 2)).toBeNull();
  });
});
