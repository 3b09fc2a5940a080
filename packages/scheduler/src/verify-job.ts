import type { VerifyJobSettings } from '@backy/core';
import { isBusy, type JobRuntime } from './job-table.js';
import { backoffSeconds, nextSlotAfter, slowWorkerLimit, spreadOffsetMs } from './schedule-math.js';
import type { VerifyStatusFields } from './status-file.js';
import type { VerifyRuntime, VerifySummary } from './verify-summary.js';

// The scheduled verify jobs (docs/scheduler.md): every `interval` a job's archive is verified with
// `backy verify --outdated-after`, which re-reads the revisions not verified within `outdated-after`.
// The planning here is pure (jobs, settings, now), like job-plan.ts; the scheduler runs what it picks.

const verifyOf = (job: JobRuntime): VerifyRuntime => job.verify;

/** Whether the job's archive is being verified now: it holds a worker, and its backup waits. */
export function isVerifying(job: JobRuntime): boolean {
  return job.verify.state === 'running';
}

/** The verify slots spread like the backups' (a hash of the name), but apart from the job's own backups. */
export function verifyOffsetMs(jobName: string, intervalSeconds: number): number {
  return spreadOffsetMs(`verify:${jobName}`, intervalSeconds);
}

/**
 * When the job's verify job is next due (ms), or null when it has none or nothing to verify yet. Its
 * slots are `k × interval + offset` after its last run (this daemon's, or the newest `verified_at`);
 * a job never verified starts at its first slot after the daemon first saw it, so that a fleet upgraded
 * to verify jobs is not verified all at once. Failures back off as backups do.
 */
export function verifyDueTime(
  job: JobRuntime,
  settings: VerifyJobSettings | null,
  now: number,
): number | null {
  if (settings == null || job.summary.count === 0) return null;
  const summary = job.summary.verify;
  const v = verifyOf(job);
  v.since ??= now;
  const runs = [v.lastRun, summary.newestVerifiedAt].filter((t): t is number => t != null);
  const last = runs.length > 0 ? Math.max(...runs) : v.since;
  let due = nextSlotAfter(last, settings.interval, verifyOffsetMs(job.name, settings.interval));
  // A failed run leaves `lastRun` as it was, so its slot has passed: the back-off alone decides.
  if (v.failures > 0 && v.lastFailure != null)
    due = Math.max(due, v.lastFailure + backoffSeconds(v.failures) * 1000);
  if (v.busyRetryAt != null) due = Math.max(due, v.busyRetryAt);
  return due;
}

/** Whether a verify at `now` would re-read anything: a revision never verified, or not within `outdated-after`. */
export function hasOutdated(summary: VerifySummary, settings: VerifyJobSettings, now: number): boolean {
  if (summary.neverVerified > 0) return true;
  return summary.oldestVerifiedAt != null && now - summary.oldestVerifiedAt >= settings.outdatedAfter * 1000;
}

/**
 * Queues the verify jobs due at `now` that have something to verify; a due one with nothing to verify
 * counts as run. Returns when the next of the others is due (Infinity: none).
 */
export function queueDueVerifies(
  jobs: Iterable<JobRuntime>,
  now: number,
  settingsOf: (job: JobRuntime) => VerifyJobSettings | null,
): number {
  let next = Infinity;
  for (const job of jobs) {
    if (job.removed) continue;
    const v = verifyOf(job);
    const settings = settingsOf(job);
    v.settings = settings;
    if (v.state !== 'idle') continue;
    if (v.revision != null) {
      // A verify asked for (API) that found the archive busy: again at its retry time.
      const at = v.busyRetryAt ?? now;
      if (at <= now) {
        v.state = 'queued';
        v.queuedAt = at;
      } else next = Math.min(next, at);
      continue;
    }
    let due = verifyDueTime(job, settings, now);
    if (due == null || settings == null) continue;
    if (due <= now && !hasOutdated(job.summary.verify, settings, now)) {
      v.lastRun = now;
      due = verifyDueTime(job, settings, now)!;
    }
    if (due <= now) {
      v.state = 'queued';
      v.queuedAt = due;
    } else next = Math.min(next, due);
  }
  return next;
}

/**
 * The job whose verify a free worker should start, or null. Backups come first (the scheduler asks
 * this only when no queued backup may start); a verify reads a whole archive, so it counts as slow and
 * takes at most the slow jobs' share of the workers; never while the job's backup runs or waits.
 */
export function nextVerifyToStart(jobs: Iterable<JobRuntime>, workerLimit: number): JobRuntime | null {
  let total = 0;
  let slow = 0;
  let best: JobRuntime | null = null;
  for (const job of jobs) {
    const v = verifyOf(job);
    if (v.state === 'running') {
      total++;
      slow++;
    } else if (isBusy(job)) {
      total++;
      if (job.slow) slow++;
    }
    if (v.state !== 'queued' || isBusy(job) || job.state === 'queued') continue;
    const b = best == null ? null : verifyOf(best);
    if (b == null || v.queuedAt < b.queuedAt || (v.queuedAt === b.queuedAt && job.name < best!.name))
      best = job;
  }
  if (total >= workerLimit || slow >= slowWorkerLimit(workerLimit)) return null;
  return best;
}

/**
 * Since when each revision has gone unverified (ms): its `verified_at`; for one never verified its own
 * time, but not before `since` (when the daemon began its verify job), so that after an upgrade the old
 * revisions are not all overdue before the first verify could run.
 */
function uncheckedSince(summary: VerifySummary, since: number | null): number[] {
  return summary.checks.map((c) => c.verifiedAt ?? Math.max(c.time, since ?? c.time));
}

/** How many revisions have gone unverified longer than `outdated-after` + `interval` at `now`. */
export function overdueRevisions(
  summary: VerifySummary,
  settings: VerifyJobSettings,
  now: number,
  since: number | null = null,
): number {
  const limit = now - (settings.outdatedAfter + settings.interval) * 1000;
  return uncheckedSince(summary, since).filter((t) => t < limit).length;
}

/** The job's verify fields of the status file (status-file.ts) at `now`. */
export function verifyStatusFields(job: JobRuntime, now: number): VerifyStatusFields {
  const v = job.verify;
  const summary = job.summary.verify;
  const settings = v.settings;
  const iso = (ms: number | null) => (ms == null ? null : new Date(ms).toISOString());
  const last = [v.lastRun, summary.newestVerifiedAt].filter((t): t is number => t != null);
  const next = v.state === 'idle' ? verifyDueTime(job, settings, now) : null;
  const unchecked = uncheckedSince(summary, v.since);
  const oldest = unchecked.length > 0 ? Math.min(...unchecked) : null;
  return {
    // A job without a verify job may still be verified on request (the API): then it shows its state.
    verify_status: v.state !== 'idle' ? v.state : settings == null ? 'off' : 'waiting',
    verify_last_time: iso(last.length > 0 ? Math.max(...last) : null),
    verify_last_result: v.lastResult,
    verify_next_time: iso(next == null ? null : Math.max(next, now)),
    verify_damaged: summary.damaged.map((d) => d.uuid).join(', '),
    verify_overdue: settings == null ? 0 : overdueRevisions(summary, settings, now, v.since),
    verify_oldest_time: iso(oldest),
  };
}
