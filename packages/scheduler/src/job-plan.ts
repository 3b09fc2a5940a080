import { isBusy, type JobRuntime } from './job-table.js';
import { type PlannedRun, pickNextJob, planNextRun, type QueueEntry } from './schedule-math.js';
import { isVerifying } from './verify-job.js';

// The planning the daemon does over its jobs: pure functions of the jobs and `now`, so they are tested
// without files or timers; the scheduler feeds them and acts on the result.

/** Start (ms) of the newest run of each tag: the archive's revisions, or this daemon's own runs if later. */
export function lastRuns(job: JobRuntime): Record<string, number> {
  const runs = { ...job.summary.lastRuns };
  for (const [tag, at] of Object.entries(job.ranAt)) if (!(tag in runs) || runs[tag]! < at) runs[tag] = at;
  return runs;
}

/** The job's next run as seen at `now`, failures and their backoff included. */
export function planJob(job: JobRuntime, now: number): PlannedRun | null {
  const plan = planNextRun(
    job.name,
    job.schedule,
    { lastRuns: lastRuns(job), failures: job.failures, lastFailure: job.lastFailure },
    now,
  );
  // A job whose archive was busy looks again shortly, without a back-off (see BUSY_RETRY_MS).
  if (plan == null || job.busyRetryAt == null) return plan;
  return { ...plan, time: Math.max(plan.time, job.busyRetryAt) };
}

/** The tags of a backup starting at `now`: the planned ones after `run JOB`, else those due by now. */
export function tagsToRun(job: JobRuntime, now: number): string[] {
  if (job.runNow && job.plan != null) return job.plan.tags;
  return (
    planNextRun(job.name, job.schedule, { lastRuns: lastRuns(job), failures: 0, lastFailure: null }, now)
      ?.tags ?? []
  );
}

/**
 * Queues the idle jobs that are due at `now` or were asked for by `run`; returns when the next of the
 * others is due (Infinity: none is planned). With `mine` (fleet mode), only the jobs it accepts.
 */
export function queueDueJobs(
  jobs: Iterable<JobRuntime>,
  now: number,
  mine?: (job: JobRuntime) => boolean,
): number {
  let next = Infinity;
  for (const job of jobs) {
    if (job.state !== 'waiting' && job.state !== 'failed') continue;
    if (mine != null && !mine(job)) continue;
    if (job.runNow || (job.plan != null && job.plan.time <= now)) {
      job.state = 'queued';
      job.queuedAt = job.runNow ? now : Math.min(now, job.plan?.time ?? now);
    } else if (job.plan != null) {
      next = Math.min(next, job.plan.time);
    }
  }
  return next;
}

/** The queued job a free worker should start (see `pickNextJob`), or null when none may start now. */
export function nextJobToStart(jobs: Iterable<JobRuntime>, workerLimit: number): string | null {
  const queue: QueueEntry[] = [];
  let total = 0;
  let slow = 0;
  for (const job of jobs) {
    // A verify holds a worker like a slow backup, and the job's backup waits for it (verify-job.ts).
    if (isVerifying(job)) {
      total++;
      slow++;
    } else if (job.state === 'queued') queue.push({ name: job.name, due: job.queuedAt, slow: job.slow });
    else if (isBusy(job)) {
      total++;
      if (job.slow) slow++;
    }
  }
  return pickNextJob(queue, { total, slow }, workerLimit)?.name ?? null;
}
