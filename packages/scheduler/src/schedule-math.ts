import { createHash } from 'node:crypto';
import type { Schedule } from '@backy/core';

// Pure functions of (job, state, now): the daemon feeds them, tests drive them with a fake clock.
// Times are milliseconds since the epoch; intervals in schedules are seconds.

/** A job whose newest complete revision is older than this many shortest intervals is out of SLA. */
export const SLA_FACTOR = 1.5;
/** First retry delay after a failed backup, in seconds. */
export const BACKOFF_INITIAL_SECONDS = 120;
/** Longest retry delay, in seconds. */
export const BACKOFF_MAX_SECONDS = 6 * 3600;

/** A 48-bit number from the job name: stable across restarts, hosts and Node versions. */
export function nameHash(name: string): number {
  return createHash('sha256').update(name, 'utf8').digest().readUIntBE(0, 6);
}

/**
 * Where within each interval the job's slots lie. Because the offset is the same hash modulo each
 * interval, the slots of a tag whose interval is a multiple of another's (1h, 1d, 7d) coincide with
 * that tag's slots, so one run serves both.
 */
export function spreadOffsetMs(jobName: string, intervalSeconds: number): number {
  const intervalMs = Math.max(1, Math.round(intervalSeconds * 1000));
  return nameHash(jobName) % intervalMs;
}

/** The first slot `k × interval + offset` strictly after `afterMs`. */
export function nextSlotAfter(afterMs: number, intervalSeconds: number, offsetMs: number): number {
  const intervalMs = Math.max(1, Math.round(intervalSeconds * 1000));
  const k = Math.floor((afterMs - offsetMs) / intervalMs) + 1;
  return k * intervalMs + offsetMs;
}

/**
 * When a tag is due. A tag that never ran is due at once; otherwise at the first slot after its last
 * run. A slot that passed while the daemon was down is in the past, so the tag is due at once: that is
 * the catch-up.
 */
export function tagDueTime(
  jobName: string,
  intervalSeconds: number,
  lastRunMs: number | null,
  nowMs: number,
): number {
  if (lastRunMs == null) return nowMs;
  return nextSlotAfter(lastRunMs, intervalSeconds, spreadOffsetMs(jobName, intervalSeconds));
}

/** Tags ordered by interval (shortest first), then by name: `hourly,daily,weekly`. */
export function sortTags(schedule: Schedule, tags: Iterable<string>): string[] {
  return [...tags].sort(
    (a, b) => (schedule[a]?.interval ?? Infinity) - (schedule[b]?.interval ?? Infinity) || a.localeCompare(b),
  );
}

export interface JobTimeline {
  /** Start time (ms) of the newest revision carrying each tag; missing or null: never ran. */
  lastRuns: Readonly<Record<string, number | null | undefined>>;
  /** Failed attempts since the last success. */
  failures: number;
  /** When the last failed attempt ended (ms), if `failures > 0`. */
  lastFailure: number | null;
}

export interface PlannedRun {
  /** When to start (ms); at or before `now` means at once. */
  time: number;
  /** The tags the run makes: every tag due by `time`. */
  tags: string[];
}

export function backoffSeconds(failures: number): number {
  if (failures <= 0) return 0;
  return Math.min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2 ** Math.min(failures - 1, 30));
}

/** The next run of a job: the earliest due tag, held back by the retry delay after failures. */
export function planNextRun(
  jobName: string,
  schedule: Schedule,
  timeline: JobTimeline,
  nowMs: number,
): PlannedRun | null {
  const entries = Object.entries(schedule);
  if (entries.length === 0) return null;
  const due = entries.map(([tag, rule]) => ({
    tag,
    at: tagDueTime(jobName, rule.interval, timeline.lastRuns[tag] ?? null, nowMs),
  }));
  let time = Math.min(...due.map((d) => d.at));
  if (timeline.failures > 0 && timeline.lastFailure != null) {
    time = Math.max(time, timeline.lastFailure + backoffSeconds(timeline.failures) * 1000);
  }
  const at = Math.max(time, nowMs);
  return {
    time,
    tags: sortTags(
      schedule,
      due.filter((d) => d.at <= at).map((d) => d.tag),
    ),
  };
}

export interface SlaState {
  ok: boolean;
  /** Seconds beyond the allowed age; 0 when within SLA. */
  overdueSeconds: number;
}

/**
 * A job is within SLA when its newest complete revision is at most 1.5 × its shortest interval old.
 * A job without any backup yet, or with one running now, is not overdue.
 */
export function slaState(
  schedule: Schedule,
  newestCompleteMs: number | null,
  running: boolean,
  nowMs: number,
): SlaState {
  const intervals = Object.values(schedule).map((r) => r.interval);
  if (newestCompleteMs == null || running || intervals.length === 0) return { ok: true, overdueSeconds: 0 };
  const allowed = SLA_FACTOR * Math.min(...intervals);
  const age = (nowMs - newestCompleteMs) / 1000;
  const overdue = Math.max(0, age - allowed);
  // Rounded up, so that a job out of SLA never shows 0 seconds overdue.
  return { ok: overdue === 0, overdueSeconds: Math.ceil(overdue) };
}

export interface QueueEntry {
  name: string;
  /** When the job became due (ms). */
  due: number;
  /** Whether its last backup was slow. */
  slow: boolean;
}

/** The share of workers slow jobs may take, so that fast jobs always find a free one when there are two or more. */
export function slowWorkerLimit(workerLimit: number): number {
  return workerLimit >= 2 ? Math.max(1, Math.floor(workerLimit / 2)) : 1;
}

/**
 * The next queued job to start, or null. Earliest due first (ties by name); slow jobs only while they
 * hold fewer than their share of workers.
 */
export function pickNextJob(
  queue: readonly QueueEntry[],
  running: { total: number; slow: number },
  workerLimit: number,
): QueueEntry | null {
  if (running.total >= workerLimit) return null;
  const slowAllowed = running.slow < slowWorkerLimit(workerLimit);
  let best: QueueEntry | null = null;
  for (const entry of queue) {
    if (entry.slow && !slowAllowed) continue;
    if (best == null || entry.due < best.due || (entry.due === best.due && entry.name < best.name))
      best = entry;
  }
  return best;
}
