// Calendar retention (`retention:` in an archive's config): keep the newest revision of each of the
// last N hours, days, ISO weeks, months and years, and the newest N revisions, as Proxmox Backup
// Server's prune documents it; plus the guards every expiry keeps (keep-within, the newest verified).
import { z } from 'zod';
import {
  CALENDAR_RULES,
  type CalendarRule,
  durationSchema,
  type ExpiryAction,
  type KeepReason,
  planExpiry,
  type Schedule,
} from './schedule.js';

/** `retention:` of an archive's config (docs/retention.md). */
export interface Retention {
  'keep-last'?: number;
  'keep-hourly'?: number;
  'keep-daily'?: number;
  'keep-weekly'?: number;
  'keep-monthly'?: number;
  'keep-yearly'?: number;
  /** Seconds: every revision younger than this stays, whatever the rules say. */
  'keep-within'?: number;
  /** The IANA time zone the periods are counted in (default UTC). */
  timezone?: string;
}

const count = z.number().int().nonnegative();

export const retentionSchema = z.strictObject({
  'keep-last': count.optional(),
  'keep-hourly': count.optional(),
  'keep-daily': count.optional(),
  'keep-weekly': count.optional(),
  'keep-monthly': count.optional(),
  'keep-yearly': count.optional(),
  'keep-within': durationSchema.optional(),
  timezone: z
    .string()
    .refine(isTimeZone, { message: 'unknown time zone (an IANA name such as Europe/Berlin, or UTC)' })
    .optional(),
});

/** Whether the policy has calendar rules (else `expire` follows the schedule's tags, with its guards). */
export function hasCalendarRules(policy: Retention | undefined): policy is Retention {
  return policy != null && CALENDAR_RULES.some((rule) => (policy[`keep-${rule}`] ?? 0) > 0);
}

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export interface RetentionRevision {
  uuid: string;
  timestamp: string;
  trust?: string;
  protected?: boolean;
  tags?: readonly string[];
  /** The store's Object Lock retention (revision.ts): until then it cannot be removed. */
  retention?: { until: string };
}

/** Object Lock's guard: a revision the store retains past `now` stays (its removal would be refused). */
function retainedGuard(
  actions: ExpiryAction[],
  revisions: readonly RetentionRevision[],
  now: Date,
): ExpiryAction[] {
  const byId = new Map(revisions.map((r) => [r.uuid, r]));
  for (const action of actions) {
    const until = byId.get(action.uuid)?.retention?.until;
    if (!action.remove || until == null || !(Date.parse(until) > now.getTime())) continue;
    action.remove = false;
    action.keptBy = 'retained';
  }
  return actions;
}

/**
 * Which revisions the policy keeps, and why (null: it goes). Periods are the revision's local hour, day,
 * ISO week, month and year in `timezone`. As in PBS, newest first: each rule keeps the newest revision of
 * each period not yet covered by a revision an earlier rule kept, until it has kept its count; a period
 * holding a kept revision counts once. Guards first: protected revisions and those with a `manual:`
 * tag (set aside by hand: they stay and fill no period), revisions younger than `keep-within` and the
 * newest `verified` revision (the last one known good; both stay and fill their periods). A revision dated after `now`
 * (a clock gone wrong, or a planted one) stays but fills no period and counts for no rule: a flood of
 * such revisions, or of recent ones, cannot push an older one out before its periods have passed.
 */
export function planRetention(
  revisions: readonly RetentionRevision[],
  policy: Retention,
  now: Date,
): Map<string, KeepReason | null> {
  const newestFirst = [...revisions].sort((a, b) => Date.parse(b.timestamp) - Date.parse(a.timestamp));
  const reasons = new Map<string, KeepReason | null>(newestFirst.map((r) => [r.uuid, null]));
  const within = (policy['keep-within'] ?? 0) * 1000;
  const future = newestFirst.filter((r) => Date.parse(r.timestamp) > now.getTime());
  for (const r of future) reasons.set(r.uuid, 'future');
  const past = newestFirst.filter((r) => reasons.get(r.uuid) == null);
  for (const r of past) {
    if (r.protected === true) reasons.set(r.uuid, 'protected');
    else if (r.tags?.some((t) => t.startsWith('manual:'))) reasons.set(r.uuid, 'manual');
    else if (now.getTime() - Date.parse(r.timestamp) < within) reasons.set(r.uuid, 'within');
  }
  const verified = past.find((r) => r.trust === 'verified');
  if (verified != null && reasons.get(verified.uuid) == null) reasons.set(verified.uuid, 'newest-verified');
  const periodOf = periodFunction(policy.timezone ?? 'UTC');
  // Kept by a calendar rule so far: later rules skip the periods these fall in.
  const kept: RetentionRevision[] = [];
  for (const rule of CALENDAR_RULES) {
    const limit = policy[`keep-${rule}`] ?? 0;
    if (limit === 0) continue;
    const covered = new Set(kept.map((r) => periodOf(rule, r)));
    const chosen = new Set<string>();
    for (const r of past) {
      const reason = reasons.get(r.uuid);
      // Set aside by hand (protect, a manual: tag): outside the policy, as PBS keeps protected ones.
      if (reason === 'protected' || reason === 'manual') continue;
      if (reason != null && CALENDAR_RULES.includes(reason as CalendarRule)) continue;
      const period = periodOf(rule, r);
      if (covered.has(period) || chosen.has(period)) continue;
      if (chosen.size >= limit) break;
      chosen.add(period);
      // A guarded revision fills its period too (it stays anyway); the reason it gets is the guard's.
      if (reason == null) reasons.set(r.uuid, rule);
      kept.push(r);
    }
  }
  return reasons;
}

/** `rule`'s period of a revision as a string key, in `timezone`. */
function periodFunction(timezone: string): (rule: CalendarRule, rev: RetentionRevision) => string {
  const format = new Intl.DateTimeFormat('en-CA', {
    timeZone: timezone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    hourCycle: 'h23',
  });
  return (rule, rev) => {
    if (rule === 'last') return rev.uuid;
    const parts = Object.fromEntries(
      format.formatToParts(new Date(rev.timestamp)).map((p) => [p.type, p.value]),
    ) as Record<'year' | 'month' | 'day' | 'hour', string>;
    const { year, month, day, hour } = parts;
    switch (rule) {
      case 'hourly':
        return `${year}-${month}-${day}T${hour}`;
      case 'daily':
        return `${year}-${month}-${day}`;
      case 'weekly':
        return isoWeek(Number(year), Number(month), Number(day));
      case 'monthly':
        return `${year}-${month}`;
      case 'yearly':
        return year;
    }
  };
}

/** The ISO 8601 week (`2026-W49`) of a calendar date: weeks start on Monday, week 1 holds 4 January. */
export function isoWeek(year: number, month: number, day: number): string {
  const date = new Date(Date.UTC(year, month - 1, day));
  const weekday = date.getUTCDay() || 7;
  // The Thursday of this week decides the year the week belongs to.
  date.setUTCDate(date.getUTCDate() + 4 - weekday);
  const weekYear = date.getUTCFullYear();
  const week = Math.ceil(((date.getTime() - Date.UTC(weekYear, 0, 1)) / 86_400_000 + 1) / 7);
  return `${weekYear}-W${String(week).padStart(2, '0')}`;
}

/**
 * What `expire` does to the archive's revisions now: with calendar rules in `retention`, every revision
 * with the rule or guard that keeps it, or removed (tags stay as they are); else the schedule's tag
 * rules (`planExpiry`), where a revision left without tags still stays when it is younger than
 * `keep-within`, the newest verified one, or protected.
 */
export function planArchiveExpiry(
  revisions: readonly (RetentionRevision & { tags: string[] })[],
  schedule: Schedule,
  retention: Retention | undefined,
  now: Date,
): ExpiryAction[] {
  if (hasCalendarRules(retention)) {
    const reasons = planRetention(revisions, retention, now);
    const actions = [...reasons].map(([uuid, reason]) => ({
      uuid,
      removeTags: [],
      remove: reason == null,
      ...(reason != null ? { keptBy: reason } : {}),
    }));
    return retainedGuard(actions, revisions, now);
  }
  const actions = planExpiry(revisions, schedule, now);
  const within = (retention?.['keep-within'] ?? 0) * 1000;
  const byId = new Map(revisions.map((r) => [r.uuid, r]));
  const newestVerified = [...revisions]
    .filter((r) => r.trust === 'verified')
    .sort((a, b) => Date.parse(b.timestamp) - Date.parse(a.timestamp))[0];
  for (const action of actions) {
    if (!action.remove) continue;
    const rev = byId.get(action.uuid)!;
    const keptBy: KeepReason | null =
      rev.uuid === newestVerified?.uuid
        ? 'newest-verified'
        : now.getTime() - Date.parse(rev.timestamp) < within
          ? 'within'
          : null;
    if (keptBy == null) continue;
    action.remove = false;
    action.keptBy = keptBy;
  }
  return retainedGuard(actions, revisions, now);
}
