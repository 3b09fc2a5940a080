import { describe, expect, it } from 'vitest';
import { archiveConfigSchema } from './config.js';
import { isoWeek, planArchiveExpiry, planRetention, type Retention, retentionSchema } from './retention.js';
import { scheduleSchema } from './schedule.js';

const rev = (uuid: string, timestamp: string, extra: Record<string, unknown> = {}) => ({
  uuid,
  timestamp,
  tags: ['daily'],
  trust: 'trusted',
  ...extra,
});

const plan = (revisions: ReturnType<typeof rev>[], policy: Retention, now: string) =>
  Object.fromEntries(planRetention(revisions, policy, new Date(now)));

describe('calendar retention', () => {
  it('computes ISO weeks across year ends', () => {
    expect(isoWeek(2026, 12, 5)).toBe('2026-W49');
    expect(isoWeek(2026, 11, 29)).toBe('2026-W48');
    expect(isoWeek(2025, 12, 31)).toBe('2026-W01');
    expect(isoWeek(2027, 1, 1)).toBe('2026-W53');
    expect(isoWeek(2021, 1, 3)).toBe('2020-W53');
  });

  it("keeps the newest revision of each period, newest first, rule after rule, skipping periods an earlier rule covers (PBS's prune)", () => {
    const revisions = [
      rev('a', '2026-12-05T10:00:00Z'),
      rev('b', '2026-12-05T08:00:00Z'),
      rev('c', '2026-12-04T23:00:00Z'),
      rev('d', '2026-12-04T12:00:00Z'),
      rev('e', '2026-12-03T12:00:00Z'),
      rev('f', '2026-11-30T12:00:00Z'), // Monday of week 49
      rev('g', '2026-11-29T12:00:00Z'), // Sunday: week 48
      rev('h', '2026-11-15T12:00:00Z'), // week 46
      rev('i', '2026-10-31T12:00:00Z'),
      rev('j', '2026-10-01T12:00:00Z'),
      rev('k', '2025-12-31T12:00:00Z'), // ISO week 2026-W01, but month 2025-12 and year 2025
      rev('l', '2025-06-01T12:00:00Z'),
    ];
    const policy = { 'keep-last': 2, 'keep-daily': 3, 'keep-weekly': 2, 'keep-monthly': 2, 'keep-yearly': 2 };
    expect(plan(revisions, policy, '2026-12-05T12:00:00Z')).toEqual({
      a: 'last',
      b: 'last',
      c: 'daily',
      d: null, // its day holds c already
      e: 'daily',
      f: 'daily', // the third day; week 49 is now covered
      g: 'weekly',
      h: 'weekly',
      i: 'monthly', // months 2026-12 and 2026-11 are covered by the daily and weekly ones
      j: null,
      k: 'monthly',
      l: null, // 2025 is covered by k, 2026 by the rest: keep-yearly finds nothing new
    });
  });

  it('counts days in the configured time zone', () => {
    // 23:30 UTC on 4 December is 00:30 on 5 December in Berlin: one day there, two in UTC.
    const revisions = [rev('late', '2026-12-04T23:30:00Z'), rev('noon', '2026-12-05T12:00:00Z')];
    const now = '2026-12-05T13:00:00Z';
    expect(plan(revisions, { 'keep-daily': 5 }, now)).toEqual({ noon: 'daily', late: 'daily' });
    expect(plan(revisions, { 'keep-daily': 5, timezone: 'Europe/Berlin' }, now)).toEqual({
      noon: 'daily',
      late: null,
    });
  });

  it('guards: protected and manual ones stay outside the rules; keep-within and the newest verified stay and fill their period', () => {
    const revisions = [
      rev('new', '2026-12-05T11:00:00Z'),
      rev('prot', '2026-12-04T12:00:00Z', { protected: true }),
      rev('man', '2026-12-03T12:00:00Z', { tags: ['manual:before-upgrade'] }),
      rev('ver', '2026-12-02T12:00:00Z', { trust: 'verified' }),
      rev('old', '2026-12-01T12:00:00Z'),
      rev('older', '2026-11-30T12:00:00Z'),
    ];
    expect(plan(revisions, { 'keep-daily': 2, 'keep-within': 3600 * 2 }, '2026-12-05T12:00:00Z')).toEqual({
      new: 'within', // fills 12-05
      prot: 'protected',
      man: 'manual',
      ver: 'newest-verified', // fills 12-02: the second day
      old: null,
      older: null,
    });
  });

  it('a flood of planted revisions cannot push a real one out before keep-within, nor with dates in the future', () => {
    const now = '2026-12-05T12:00:00Z';
    const real = rev('real', '2026-12-04T12:00:00Z');
    // A thousand revisions in the last hour (one hour, one day) and a thousand dated next year.
    const recent = Array.from({ length: 1000 }, (_, i) =>
      rev(`fake${i}`, new Date(Date.parse(now) - 1000 * (i + 1)).toISOString()),
    );
    const future = Array.from({ length: 1000 }, (_, i) =>
      rev(`future${i}`, new Date(Date.parse('2027-06-01T00:00:00Z') + 86_400_000 * i).toISOString()),
    );
    const result = plan([real, ...recent, ...future], { 'keep-daily': 2, 'keep-within': 86400 * 3 }, now);
    expect(result.real).toBe('within');
    expect(new Set(future.map((r) => result[r.uuid]))).toEqual(new Set(['future']));
    // Without keep-within, keep-daily still keeps it: the recent flood fills one day only.
    const daily = plan([real, ...recent, ...future], { 'keep-daily': 2 }, now);
    expect(daily.real).toBe('daily');
    expect(recent.filter((r) => daily[r.uuid] != null)).toHaveLength(1);
  });

  it('expire with calendar rules removes what no rule keeps and leaves tags alone; without them the tags decide, with the guards', () => {
    const schedule = scheduleSchema.parse({ daily: { interval: '1d', keep: 1 } });
    const now = new Date('2026-12-05T12:00:00Z');
    const revisions = [
      rev('a', '2026-12-05T10:00:00Z'),
      rev('b', '2026-11-01T10:00:00Z', { trust: 'verified' }),
      rev('c', '2026-10-01T10:00:00Z'),
    ];
    expect(planArchiveExpiry(revisions, schedule, { 'keep-last': 1 }, now)).toEqual([
      { uuid: 'a', removeTags: [], remove: false, keptBy: 'last' },
      { uuid: 'b', removeTags: [], remove: false, keptBy: 'newest-verified' },
      { uuid: 'c', removeTags: [], remove: true },
    ]);
    expect(planArchiveExpiry(revisions, schedule, { 'keep-within': 86400 * 40 }, now)).toEqual([
      { uuid: 'b', removeTags: ['daily'], remove: false, keptBy: 'newest-verified' },
      { uuid: 'c', removeTags: ['daily'], remove: true },
    ]);
    expect(planArchiveExpiry(revisions, schedule, { 'keep-within': 86400 * 70 }, now)).toEqual([
      { uuid: 'b', removeTags: ['daily'], remove: false, keptBy: 'newest-verified' },
      { uuid: 'c', removeTags: ['daily'], remove: false, keptBy: 'within' },
    ]);
  });

  it('validates retention in the archive config, naming the key', () => {
    const config = (retention: unknown) =>
      archiveConfigSchema.safeParse({ source: { type: 'file', filename: '/x' }, retention });
    expect(
      config({ 'keep-daily': 7, 'keep-within': '2d', timezone: 'Europe/Berlin' }).data?.retention,
    ).toEqual({
      'keep-daily': 7,
      'keep-within': 2 * 86400,
      timezone: 'Europe/Berlin',
    });
    for (const [bad, path] of [
      [{ 'keep-daily': -1 }, ['retention', 'keep-daily']],
      [{ 'keep-dayly': 1 }, ['retention']],
      [{ timezone: 'Mars/Olympus' }, ['retention', 'timezone']],
      [{ 'keep-within': 'soon' }, ['retention', 'keep-within']],
    ] as const) {
      const r = config(bad);
      expect(r.success, JSON.stringify(bad)).toBe(false);
      expect(r.error!.issues[0]!.path).toEqual(path);
    }
    expect(retentionSchema.safeParse({ timezone: 'UTC' }).success).toBe(true);
  });
});
