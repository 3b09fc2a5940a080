import { describe, expect, it } from 'vitest';
import { archiveConfigSchema } from './config.js';
import { planExpiry, scheduleSchema, tagNameSchema } from './schedule.js';

const DAY = 86400_000;

describe('schedule', () => {
  it('parses durations in rules and rejects bad ones', () => {
    expect(scheduleSchema.parse({ daily: { interval: '1d', keep: 9 } })).toEqual({
      daily: { interval: 86400, keep: 9 },
    });
    expect(scheduleSchema.safeParse({ daily: { interval: 'soon', keep: 9 } }).success).toBe(false);
    expect(scheduleSchema.safeParse({ daily: { interval: '1d', keep: -1 } }).success).toBe(false);
    expect(scheduleSchema.safeParse({ daily: { interval: '1d', keep: 1, extra: 1 } }).success).toBe(false);
  });

  it('expires tags beyond keep that are older than keep × interval, over simulated weeks', () => {
    const schedule = scheduleSchema.parse({
      daily: { interval: '1d', keep: 3 },
      weekly: { interval: '7d', keep: 2 },
    });
    const start = Date.UTC(2026, 0, 1);
    let revisions: { uuid: string; tags: string[]; timestamp: string }[] = [];
    for (let day = 0; day < 60; day++) {
      const now = new Date(start + day * DAY);
      revisions.push({
        uuid: `r${day}`,
        tags: day % 7 === 0 ? ['daily', 'weekly'] : ['daily'],
        timestamp: now.toISOString(),
      });
      for (const action of planExpiry(revisions, schedule, now)) {
        if (action.remove) revisions = revisions.filter((r) => r.uuid !== action.uuid);
        else {
          const rev = revisions.find((r) => r.uuid === action.uuid)!;
          rev.tags = rev.tags.filter((t) => !action.removeTags.includes(t));
        }
      }
    }
    const daily = revisions.filter((r) => r.tags.includes('daily')).map((r) => r.uuid);
    const weekly = revisions.filter((r) => r.tags.includes('weekly')).map((r) => r.uuid);
    // keep 3 daily: the newest 3 plus those not yet older than 3 days (day 56 is exactly 3 days old).
    expect(daily).toEqual(['r56', 'r57', 'r58', 'r59']);
    // keep 2 weekly: r42 is 17 days old at day 59, beyond 2 × 7 days.
    expect(weekly).toEqual(['r49', 'r56']);
    expect(revisions.every((r) => r.tags.length > 0)).toBe(true);
  });

  it('keeps manual tags and tags the schedule does not know, removes untagged revisions', () => {
    const now = new Date(Date.UTC(2026, 5, 1));
    const old = new Date(now.getTime() - 100 * DAY).toISOString();
    const schedule = scheduleSchema.parse({ daily: { interval: '1d', keep: 1 } });
    const revs = [
      { uuid: 'a', tags: ['daily', 'manual:before-upgrade'], timestamp: old },
      { uuid: 'b', tags: ['daily', 'custom'], timestamp: old },
      { uuid: 'c', tags: ['daily'], timestamp: old },
      { uuid: 'd', tags: [], timestamp: old },
      { uuid: 'e', tags: ['daily'], timestamp: now.toISOString() },
    ];
    const plan = Object.fromEntries(planExpiry(revs, schedule, now).map((a) => [a.uuid, a]));
    expect(plan.a).toEqual({ uuid: 'a', removeTags: ['daily'], remove: false });
    expect(plan.b).toEqual({ uuid: 'b', removeTags: ['daily'], remove: false });
    expect(plan.c).toEqual({ uuid: 'c', removeTags: ['daily'], remove: true });
    expect(plan.d).toEqual({ uuid: 'd', removeTags: [], remove: true });
    expect(plan.e).toBeUndefined();
  });

  it('never removes a protected revision: it loses expired tags (and so counts towards no keep) and stays', () => {
    const now = new Date(Date.UTC(2026, 5, 1));
    const old = new Date(now.getTime() - 100 * DAY).toISOString();
    const schedule = scheduleSchema.parse({ daily: { interval: '1d', keep: 1 } });
    const revs = [
      { uuid: 'p', tags: ['daily'], timestamp: old, protected: true },
      { uuid: 'bare', tags: [], timestamp: old, protected: true },
      { uuid: 'c', tags: ['daily'], timestamp: old },
      { uuid: 'e', tags: ['daily'], timestamp: now.toISOString() },
    ];
    expect(planExpiry(revs, schedule, now)).toEqual([
      { uuid: 'p', removeTags: ['daily'], remove: false, keptBy: 'protected' },
      { uuid: 'c', removeTags: ['daily'], remove: true },
    ]);
  });

  it('keep: 0 never expires the tag, as in backy 2.x (its expire removes revisions[:-0], none)', () => {
    const now = new Date(Date.UTC(2026, 5, 1));
    const schedule = scheduleSchema.parse({
      daily: { interval: '1d', keep: 0 },
      weekly: { interval: '7d', keep: 1 },
    });
    const revs = [
      { uuid: 'old', tags: ['daily'], timestamp: new Date(now.getTime() - 400 * DAY).toISOString() },
      {
        uuid: 'both',
        tags: ['daily', 'weekly'],
        timestamp: new Date(now.getTime() - 300 * DAY).toISOString(),
      },
      { uuid: 'new', tags: ['daily'], timestamp: now.toISOString() },
      { uuid: 'w', tags: ['weekly'], timestamp: now.toISOString() },
    ];
    // `both` loses weekly (keep 1, far older than 7 days) but keeps daily, so it stays.
    expect(planExpiry(revs, schedule, now)).toEqual([
      { uuid: 'both', removeTags: ['weekly'], remove: false },
    ]);
  });

  it('refuses intervals that are too long or not positive, naming the key path', () => {
    for (const interval of ['99999999999999999999d', '101y', 0, -1, '0s', Number.POSITIVE_INFINITY, 1e300]) {
      const result = archiveConfigSchema.safeParse({
        source: { type: 'file', filename: '/x' },
        schedule: { daily: { interval, keep: 1 } },
      });
      expect(result.success, String(interval)).toBe(false);
      expect(result.error!.issues[0]!.path).toEqual(['schedule', 'daily', 'interval']);
    }
    const longest = scheduleSchema.parse({ y: { interval: '5200w', keep: 1 } });
    expect(longest.y!.interval).toBe(5200 * 7 * 86400);
  });

  it('refuses an empty manual: tag and other invalid tag names', () => {
    for (const tag of ['manual:', '', 'a b', 'dä'])
      expect(tagNameSchema.safeParse(tag).success, tag).toBe(false);
    for (const tag of ['manual:x', 'daily', 'a.b-c_d:e'])
      expect(tagNameSchema.safeParse(tag).success, tag).toBe(true);
    expect(scheduleSchema.safeParse({ 'manual:': { interval: '1d', keep: 1 } }).success).toBe(false);
  });
});
