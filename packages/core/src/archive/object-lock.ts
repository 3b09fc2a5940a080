// Object Lock on a revision's commit: how long the store must retain the revision, and every chunk it
// references retained at least that long before its `.rev` makes it exist (docs/immutable-backups.md).
import type { ObjectLock } from '../backend/contract.js';
import { BackyError } from '../errors.js';
import type { Retention } from '../retention.js';
import type { RevisionData, RevisionRetention } from '../revision.js';
import { MANUAL_TAG_PREFIX, type Schedule } from '../schedule.js';
import type { ChunkMap } from '../store/chunk-map.js';
import type { ChunkStore } from '../store/contract.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The longest a calendar rule's period can be, per rule (a month of 31 days, a leap year). */
const PERIOD_MS = {
  hourly: HOUR,
  daily: DAY,
  weekly: 7 * DAY,
  monthly: 31 * DAY,
  yearly: 366 * DAY,
} as const;

/**
 * How long after its timestamp expiry may keep a revision with `tags`, at most (ms): the rule that can
 * keep it longest. Schedule tags: `keep × interval` (a tag is never taken off a younger revision);
 * calendar retention: N periods of the longest rule (which rule will keep it is known only later), plus
 * one period (the revision may be the newest of the current one). Null when no rule ever removes it
 * (a manual tag, `keep: 0`, no tags, or only `keep-last`).
 */
export function keepHorizon(
  tags: readonly string[],
  schedule: Schedule,
  retention: Retention | undefined,
): number | null {
  const within = (retention?.['keep-within'] ?? 0) * 1000;
  const calendar = Object.entries(PERIOD_MS)
    .map(([rule, ms]) => {
      const n = retention?.[`keep-${rule as keyof typeof PERIOD_MS}`] ?? 0;
      return n > 0 ? (n + 1) * ms : 0;
    })
    .reduce((a, b) => Math.max(a, b), 0);
  if (calendar > 0) return Math.max(calendar, within);
  if (tags.length === 0) return null;
  let horizon = within;
  for (const tag of tags) {
    const rule = schedule[tag];
    if (tag.startsWith(MANUAL_TAG_PREFIX) || rule == null || rule.keep === 0) return null;
    horizon = Math.max(horizon, rule.keep * rule.interval * 1000);
  }
  return horizon;
}

/** When revision `rev`'s retention ends: at least what it was given (`--retain-until`, a copy's source). */
export function retainUntilOf(
  rev: Pick<RevisionData, 'timestamp' | 'tags' | 'retention'>,
  lock: ObjectLock,
  schedule: Schedule,
  retention: Retention | undefined,
): number {
  const horizon = keepHorizon(rev.tags, schedule, retention) ?? lock.manualMs;
  const computed = Date.parse(rev.timestamp) + horizon + lock.marginMs;
  const given = rev.retention == null ? Number.NaN : Date.parse(rev.retention.until);
  return Number.isFinite(given) ? Math.max(given, computed) : computed;
}

/** What the chunks of a revision's parent are retained until already (its commit made sure). */
export interface RetainedParent {
  hashes: ReadonlySet<string>;
  /** Ms since the epoch. */
  chunksUntil: number;
}

export function retainedParent(
  parent: { revision: RevisionData; map: ChunkMap } | null,
): RetainedParent | null {
  const until = parent?.revision.retention?.chunks_until;
  if (parent == null || until == null) return null;
  return { hashes: new Set(parent.map.uniqueHashes()), chunksUntil: Date.parse(until) };
}

/**
 * Retains every chunk of `map` until at least `until` before the revision commits, so deduplication
 * never shortens a revision's protection: a chunk the parent holds retained long enough already costs
 * no request; the others are extended (one PutObjectRetention each) to the next multiple of the lock's
 * step, so the revisions of one step share the extension. Returns the revision's `retention` record.
 */
export async function retainChunks(
  store: ChunkStore,
  lock: ObjectLock,
  map: ChunkMap,
  until: number,
  parent: RetainedParent | null,
): Promise<RevisionRetention> {
  const chunksUntil = Math.ceil(until / lock.stepMs) * lock.stepMs;
  const todo: string[] = [];
  for (const hash of map.uniqueHashes())
    if (!(parent != null && parent.chunksUntil >= until && parent.hashes.has(hash))) todo.push(hash);
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const hash = todo[next++]!;
      if ((await store.retain!(hash, chunksUntil)) == null)
        throw new BackyError(
          'CHUNK_MISSING',
          `chunk ${hash} is missing from ${store.root}: cannot retain it`,
        );
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, Math.max(1, todo.length)) }, worker));
  // The chunks left to the parent's retention hold only until its end.
  const reused = parent != null && todo.length < countUnique(map);
  const least = reused ? Math.min(chunksUntil, parent.chunksUntil) : chunksUntil;
  return {
    mode: lock.mode,
    until: new Date(until).toISOString(),
    chunks_until: new Date(least).toISOString(),
    chunks_extended: todo.length,
  };
}

function countUnique(map: ChunkMap): number {
  let n = 0;
  for (const _ of map.uniqueHashes()) n++;
  return n;
}

/** Whether Object Lock still retains revision `rev` at `now` (it cannot be removed before). */
export function isRetained(rev: Pick<RevisionData, 'retention'>, now = Date.now()): boolean {
  return rev.retention != null && Date.parse(rev.retention.until) > now;
}
