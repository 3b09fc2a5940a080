import { z } from 'zod';
import type { Revision } from './revision.js';
import { parseDuration } from './units.js';

export const MANUAL_TAG_PREFIX = 'manual:';

/** The longest duration a config may give: 100 years. */
export const MAX_DURATION_SECONDS = 100 * 365 * 86400;

/**
 * A duration (`30m`, `1h`, `1d`, `7w`, `1h30m` or bare seconds) in seconds, or why it is not one: for
 * option schemas, as `durationSchema` here.
 */
export function checkDuration(value: string | number): number | string {
  const seconds = parseDuration(value);
  if (seconds == null)
    return `invalid duration ${JSON.stringify(value)} (use e.g. 30m, 1h, 1d, 7w or seconds)`;
  // Beyond this, slot and expiry arithmetic leaves the range of a Date (or of a double) and every
  // comparison with it is false: a schedule that silently never runs or never expires.
  if (seconds > MAX_DURATION_SECONDS)
    return `duration ${JSON.stringify(value)} is too long (at most 100 years, ${MAX_DURATION_SECONDS} seconds)`;
  return seconds;
}

/** A duration: `30m`, `1h`, `1d`, `7w`, `1h30m` or bare seconds. Parsed to seconds. */
export const durationSchema = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const seconds = checkDuration(value);
  if (typeof seconds === 'number') return seconds;
  ctx.addIssue({ code: 'custom', message: seconds });
  return z.NEVER;
});

/** A tag's rule in a schedule. */
export interface TagRule {
  /** How often a revision with this tag is made (seconds). */
  interval: number;
  /** How many revisions with this tag to keep at least; 0: revisions never lose this tag (as in backy 2.x). */
  keep: number;
}

/** Tag → rule; intervals in seconds. */
export type Schedule = Record<string, TagRule>;

// The types are written out (not `z.infer`) so that the published declarations do not name zod;
// config-types.test.ts holds each schema to its type.
export const tagRuleSchema = z.strictObject({
  interval: durationSchema,
  keep: z.number().int().nonnegative(),
});

export const tagNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.:-]+$/, 'tag names may contain only letters, digits and . _ : -')
  .refine(
    (tag) => tag !== MANUAL_TAG_PREFIX,
    'a manual: tag needs a name after the colon, e.g. manual:before-upgrade',
  );

export const scheduleSchema = z.record(tagNameSchema, tagRuleSchema);

export interface ExpiryAction {
  uuid: string;
  /** Tags to remove from the revision. */
  removeTags: string[];
  /** True when the revision has no tags left and is deleted. */
  remove: boolean;
  /**
   * Why it stays although a rule would remove it (`protected`, `newest-verified`, `within`, …), or,
   * under calendar retention, which rule keeps it; absent when nothing keeps it.
   */
  keptBy?: KeepReason;
}

/** The calendar rules of `retention:`, in the order they are applied (retention.ts). */
export const CALENDAR_RULES = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
export type CalendarRule = (typeof CALENDAR_RULES)[number];

/** Why a revision stays: a calendar rule, or a guard. */
export type KeepReason =
  | CalendarRule
  | 'within'
  | 'newest-verified'
  | 'protected'
  | 'manual'
  | 'future'
  /** The store's Object Lock retains it until a later date. */
  | 'retained';

/**
 * Applies the keep rules: for each scheduled tag, revisions beyond the newest `keep` that are also older
 * than `keep × interval` lose the tag. Revisions left without tags are removed. `manual:` tags never
 * expire, and tags the schedule does not name are left alone. `keep: 0` means what it meant in backy
 * 2.x, whose central configs load unchanged: its expire removed `revisions[:-keep]`, which is empty for
 * 0, so the tag never expires. Read literally ("keep none") it would delete the revision just made.
 */
export function planExpiry(
  revisions: readonly Pick<Revision, 'uuid' | 'tags' | 'timestamp' | 'protected'>[],
  schedule: Schedule,
  now: Date,
): ExpiryAction[] {
  const newestFirst = [...revisions].sort((a, b) => Date.parse(b.timestamp) - Date.parse(a.timestamp));
  const remaining = new Map(newestFirst.map((r) => [r.uuid, new Set(r.tags)]));
  const removed = new Map<string, string[]>();
  for (const [tag, rule] of Object.entries(schedule)) {
    if (tag.startsWith(MANUAL_TAG_PREFIX) || rule.keep === 0) continue;
    const maxAgeMs = rule.keep * rule.interval * 1000;
    const withTag = newestFirst.filter((r) => r.tags.includes(tag));
    withTag.forEach((rev, position) => {
      if (position < rule.keep) return;
      if (now.getTime() - Date.parse(rev.timestamp) <= maxAgeMs) return;
      remaining.get(rev.uuid)!.delete(tag);
      removed.set(rev.uuid, [...(removed.get(rev.uuid) ?? []), tag]);
    });
  }
  // A protected revision loses its expired tags like any other (so it no longer counts towards a tag's
  // `keep` and pushes no other revision out), but is never deleted.
  return newestFirst
    .filter((r) => removed.has(r.uuid) || (r.tags.length === 0 && r.protected !== true))
    .map((r) => {
      const bare = remaining.get(r.uuid)!.size === 0;
      const kept = bare && r.protected === true;
      return {
        uuid: r.uuid,
        removeTags: removed.get(r.uuid) ?? [],
        remove: bare && !kept,
        ...(kept ? { keptBy: 'protected' as const } : {}),
      };
    });
}
