import type { Schedule } from '@backy/core';
import { describe, expect, it } from 'vitest';
import {
  backoffSeconds,
  type JobTimeline,
  nextSlotAfter,
  pickNextJob,
  planNextRun,
  slaState,
  slowWorkerLimit,
  spreadOffsetMs,
  tagDueTime,
} from './schedule-math.js';

const H = 3600;
const D = 86400;
const MS_H = H * 1000;
const MS_D = D * 1000;
const T0 = Date.UTC(2026, 0, 5, 0, 0, 0); // a Monday, midnight UTC

const DEFAULT: Schedule = {
  daily: { interval: D, keep: 9 },
  weekly: { interval: 7 * D, keep: 5 },
  monthly: { interval: 28 * D, keep: 4 },
};
const HOURLY: Schedule = { hourly: { interval: H, keep: 25 }, daily: { interval: D, keep: 8 } };

interface Run {
  start: number;
  tags: string[];
}

/**
 * Drives planNextRun like the daemon does, with a fake clock: jump to the next planned run, "back up"
 * for `durationMs`, record the revision. `down` lists intervals in which the daemon is not running.
 */
function simulate(
  name: string,
  schedule: Schedule,
  options: {
    from: number;
    until: number;
    durationMs?: number;
    down?: [number, number][];
    fail?: (start: number) => boolean;
  },
) {
  const runs: Run[] = [];
  const attempts: number[] = [];
  const lastRuns: Record<string, number> = {};
  const timeline: JobTimeline = { lastRuns, failures: 0, lastFailure: null };
  let now = options.from;
  let worstAge = 0;
  let newest: number | null = null;
  const slaViolationsWhileUp: number[] = [];
  while (now < options.until) {
    const down = options.down?.find(([a, b]) => now >= a && now < b);
    if (down) {
      now = down[1];
      continue;
    }
    const plan = planNextRun(name, schedule, timeline, now)!;
    let start = Math.max(plan.time, now);
    const nextDown = options.down?.find(([a]) => a > now && a <= start);
    if (nextDown) {
      now = nextDown[0];
      continue;
    }
    if (start >= options.until) break;
    // SLA is sampled every simulated minute between runs while the daemon is up.
    for (let t = now; t < start; t += 60_000) {
      const sla = slaState(schedule, newest, false, t);
      if (!sla.ok) slaViolationsWhileUp.push(t);
    }
    now = start;
    attempts.push(start);
    const end = start + (options.durationMs ?? 5 * 60_000);
    if (options.fail?.(start)) {
      timeline.failures++;
      timeline.lastFailure = end;
    } else {
      const tags = planNextRun(name, schedule, timeline, start)!.tags;
      runs.push({ start, tags });
      for (const tag of tags) lastRuns[tag] = start;
      if (newest != null) worstAge = Math.max(worstAge, start - newest);
      newest = start;
      timeline.failures = 0;
      timeline.lastFailure = null;
    }
    now = end;
    start = now;
  }
  return { runs, attempts, worstAge, slaViolationsWhileUp };
}

describe('spread', () => {
  it('is a deterministic function of the job name, within the interval', () => {
    expect(spreadOffsetMs('web01', D)).toBe(spreadOffsetMs('web01', D));
    expect(spreadOffsetMs('web01', D)).not.toBe(spreadOffsetMs('web02', D));
    for (const name of ['a', 'web01', 'x'.repeat(100)]) {
      const off = spreadOffsetMs(name, D);
      expect(off).toBeGreaterThanOrEqual(0);
      expect(off).toBeLessThan(MS_D);
    }
  });

  it('spreads 500 daily jobs over the whole day instead of midnight', () => {
    const perHour = new Array(24).fill(0);
    for (let i = 0; i < 500; i++) perHour[Math.floor(spreadOffsetMs(`vm${i}.example.com`, D) / MS_H)]++;
    // Uniform would be ~21 per hour; every hour gets some and none gets a crowd.
    expect(Math.min(...perHour)).toBeGreaterThanOrEqual(8);
    expect(Math.max(...perHour)).toBeLessThanOrEqual(40);
  });

  it('makes slots of nested intervals coincide, so a weekly run is also a daily run', () => {
    const name = 'db7';
    const daily = spreadOffsetMs(name, D);
    const weekly = spreadOffsetMs(name, 7 * D);
    expect(weekly % MS_D).toBe(daily);
    const { runs } = simulate(name, DEFAULT, { from: T0, until: T0 + 8 * 7 * MS_D });
    const weeklyRuns = runs.filter((r) => r.tags.includes('weekly'));
    expect(weeklyRuns.length).toBeGreaterThanOrEqual(8);
    for (const r of weeklyRuns) expect(r.tags).toContain('daily');
  });

  it('computes the next slot strictly after a time', () => {
    expect(nextSlotAfter(0, 10, 3000)).toBe(3000);
    expect(nextSlotAfter(3000, 10, 3000)).toBe(13000);
    expect(nextSlotAfter(2999, 10, 3000)).toBe(3000);
    expect(nextSlotAfter(-1, 10, 0)).toBe(0);
  });
});

describe('next due time', () => {
  it('runs a tag that never ran at once, then at its slots', () => {
    expect(tagDueTime('j', D, null, T0 + 123)).toBe(T0 + 123);
    const plan = planNextRun('j', DEFAULT, { lastRuns: {}, failures: 0, lastFailure: null }, T0);
    expect(plan).toEqual({ time: T0, tags: ['daily', 'weekly', 'monthly'] });
  });

  it('keeps a job at the same time of day over simulated weeks, restarts included', () => {
    const name = 'web01';
    const { runs } = simulate(name, DEFAULT, {
      from: T0,
      until: T0 + 6 * 7 * MS_D,
      down: [[T0 + 10 * MS_D + 1000, T0 + 10 * MS_D + 60_000]],
    });
    const offset = spreadOffsetMs(name, D);
    // The first run is the catch-up of never-run tags; all later ones sit on the job's daily slot.
    for (const r of runs.slice(1)) expect((r.start - T0) % MS_D).toBe(offset);
    expect(runs.length).toBeGreaterThanOrEqual(41);
    expect(runs.length).toBeLessThanOrEqual(43);
  });

  it('makes as many revisions per tag as the intervals say over four weeks', () => {
    const { runs } = simulate('mail', HOURLY, { from: T0, until: T0 + 28 * MS_D });
    const count = (tag: string) => runs.filter((r) => r.tags.includes(tag)).length;
    expect(count('hourly')).toBeGreaterThanOrEqual(28 * 24 - 1);
    expect(count('hourly')).toBeLessThanOrEqual(28 * 24 + 1);
    expect(count('daily')).toBeGreaterThanOrEqual(28);
    expect(count('daily')).toBeLessThanOrEqual(29);
  });

  it('holds the SLA over simulated weeks while the daemon runs', () => {
    for (const name of ['a', 'b', 'c', 'vm17']) {
      const { slaViolationsWhileUp, worstAge } = simulate(name, DEFAULT, {
        from: T0,
        until: T0 + 5 * 7 * MS_D,
        durationMs: 40 * 60_000,
      });
      expect(slaViolationsWhileUp).toEqual([]);
      expect(worstAge).toBeLessThanOrEqual(1.5 * MS_D);
    }
  });
});

describe('catch-up after downtime', () => {
  it('runs exactly the missed tags at the first opportunity', () => {
    const name = 'web01';
    const offset = spreadOffsetMs(name, D);
    // Down for three days, through a weekly slot.
    const weeklySlot = nextSlotAfter(T0 + 2 * 7 * MS_D, 7 * D, spreadOffsetMs(name, 7 * D));
    const downFrom = weeklySlot - 2 * MS_D;
    const downUntil = weeklySlot + MS_D + 5 * MS_H + 17_000;
    const { runs } = simulate(name, DEFAULT, {
      from: T0,
      until: downUntil + 3 * MS_D,
      down: [[downFrom, downUntil]],
    });
    const after = runs.filter((r) => r.start >= downUntil);
    // At restart: the missed daily and weekly, not monthly (its slot was not missed).
    expect(after[0]).toEqual({ start: downUntil, tags: ['daily', 'weekly'] });
    // Then back on the job's slot.
    expect((after[1]!.start - T0) % MS_D).toBe(offset);
    expect(after[1]!.tags).toEqual(['daily']);
    expect(after[1]!.start - after[0]!.start).toBeLessThanOrEqual(MS_D);
  });

  it('runs nothing extra after a restart that missed no slot', () => {
    const name = 'quiet';
    const { runs } = simulate(name, HOURLY, {
      from: T0,
      until: T0 + 2 * MS_D,
      down: [[T0 + MS_H + spreadOffsetMs(name, H) + 1, T0 + MS_H + spreadOffsetMs(name, H) + 1000]],
    });
    const hourly = runs.filter((r) => r.tags.includes('hourly'));
    expect(hourly.length).toBeLessThanOrEqual(2 * 24 + 1);
    for (const r of runs.slice(1)) expect((r.start - T0) % MS_H).toBe(spreadOffsetMs(name, H));
  });

  it('restores the SLA with the first run after the outage', () => {
    const name = 'db1';
    const downFrom = T0 + 3 * MS_D;
    const downUntil = T0 + 6 * MS_D;
    const { runs } = simulate(name, DEFAULT, {
      from: T0,
      until: T0 + 10 * MS_D,
      down: [[downFrom, downUntil]],
    });
    const first = runs.find((r) => r.start >= downUntil)!;
    expect(first.start).toBe(downUntil);
    expect(slaState(DEFAULT, downFrom - MS_H, false, downUntil).ok).toBe(false);
    expect(slaState(DEFAULT, first.start, false, downUntil + MS_H).ok).toBe(true);
  });
});

describe('SLA', () => {
  it('allows 1.5 × the shortest interval', () => {
    expect(slaState(HOURLY, T0, false, T0 + 1.5 * MS_H)).toEqual({ ok: true, overdueSeconds: 0 });
    expect(slaState(HOURLY, T0, false, T0 + 1.5 * MS_H + 90_000)).toEqual({ ok: false, overdueSeconds: 90 });
    expect(slaState(DEFAULT, T0, false, T0 + 2 * MS_D)).toEqual({ ok: false, overdueSeconds: D / 2 });
  });

  it('does not count a job without backups, or one running now, as overdue', () => {
    expect(slaState(DEFAULT, null, false, T0 + 100 * MS_D)).toEqual({ ok: true, overdueSeconds: 0 });
    expect(slaState(DEFAULT, T0, true, T0 + 100 * MS_D)).toEqual({ ok: true, overdueSeconds: 0 });
  });
});

describe('backoff', () => {
  it('doubles from 2 minutes up to 6 hours', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 50].map(backoffSeconds)).toEqual([
      0, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600,
    ]);
  });

  it('retries a failing job with growing delays and resumes the schedule after success', () => {
    const name = 'flaky';
    const healedAt = T0 + 2 * MS_D;
    const { attempts, runs } = simulate(name, HOURLY, {
      from: T0,
      until: T0 + 3 * MS_D,
      durationMs: 1000,
      fail: (start) => start < healedAt,
    });
    const failed = attempts.filter((a) => a < healedAt);
    const gaps = failed.slice(1).map((a, i) => Math.round((a - failed[i]!) / 1000));
    // Each gap is the backoff after the attempt's end (1 s after its start).
    expect(gaps.slice(0, 9)).toEqual([121, 241, 481, 961, 1921, 3841, 7681, 15361, 21601]);
    expect(new Set(gaps.slice(9))).toEqual(new Set([21601]));
    // The first success carries the tags that were missed meanwhile, then hourly slots resume.
    const firstOk = runs[0]!;
    expect(firstOk.start).toBeGreaterThanOrEqual(healedAt);
    expect(firstOk.tags).toEqual(['hourly', 'daily']);
    expect((runs[1]!.start - T0) % MS_H).toBe(spreadOffsetMs(name, H));
  });

  it('keeps the retry delay even when more tags become due', () => {
    const plan = planNextRun('x', HOURLY, { lastRuns: {}, failures: 3, lastFailure: T0 }, T0 + 1000);
    expect(plan!.time).toBe(T0 + 480_000);
    expect(plan!.tags).toEqual(['hourly', 'daily']);
  });
});

describe('fair queue', () => {
  const q = (name: string, due: number, slow = false) => ({ name, due, slow });

  it('starts the earliest due job while workers are free', () => {
    expect(pickNextJob([q('b', 2), q('a', 1), q('c', 1)], { total: 0, slow: 0 }, 1)?.name).toBe('a');
    expect(pickNextJob([q('a', 1)], { total: 1, slow: 0 }, 1)).toBeNull();
  });

  it('keeps a worker for fast jobs when slow ones pile up', () => {
    expect(slowWorkerLimit(1)).toBe(1);
    expect(slowWorkerLimit(2)).toBe(1);
    expect(slowWorkerLimit(4)).toBe(2);
    // Two workers, one slow job running, another slow job due first: the fast one goes.
    expect(pickNextJob([q('slow2', 1, true), q('fast', 5)], { total: 1, slow: 1 }, 2)?.name).toBe('fast');
    expect(pickNextJob([q('slow2', 1, true)], { total: 1, slow: 1 }, 2)).toBeNull();
    // With a single worker a slow job still gets its turn.
    expect(pickNextJob([q('slow2', 1, true), q('fast', 5)], { total: 0, slow: 0 }, 1)?.name).toBe('slow2');
  });
});
