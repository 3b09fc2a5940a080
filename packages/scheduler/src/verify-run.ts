import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import { reasonOf, withRun } from './job-outcome.js';
import { nextProgress } from './job-progress.js';
import { BUSY_RETRY_MS, EXIT_LOCKED } from './job-run.js';
import type { JobRuntime } from './job-table.js';
import { failedToRun, type JobRunner, type RunResult } from './runner.js';
import { backoffSeconds } from './schedule-math.js';

export interface VerifyRunContext {
  runner: JobRunner;
  clock: Clock;
  /** The job's logger (`logger.child({ job })`). */
  log: Logger;
  /** Aborted when the scheduler stops: the verify is terminated and counts neither way. */
  stopSignal: AbortSignal;
  /** Reads the job's revisions again (after the run, to see what it found). */
  reread: () => Promise<void>;
}

/**
 * What one verify run reads: the revisions not verified within `outdatedAfter` seconds, or `revision`
 * alone (whenever it was verified last).
 */
export interface VerifyRequest {
  outdatedAfter: number;
  revision?: string;
}

/**
 * Runs one verify of the job's archive (`backy verify --outdated-after`) and records its outcome in
 * `job.verify`. Damage is read from the revisions afterwards (a revision distrusted by this run), not
 * from the exit status, which is 1 for damage and for other errors alike. Returns the IDs of the
 * revisions this run found damaged.
 */
export async function runVerifyOnce(
  job: JobRuntime,
  request: VerifyRequest,
  context: VerifyRunContext,
): Promise<string[]> {
  const { clock, log, runner } = context;
  const v = job.verify;
  const started = clock.now();
  v.state = 'running';
  let result: RunResult;
  try {
    log.info(
      request.revision != null
        ? { revision: request.revision }
        : { outdatedAfterSeconds: request.outdatedAfter },
      'verify started',
    );
    result = await runner.verify!({
      job: job.name,
      dir: job.dir,
      ...request,
      signal: context.stopSignal,
      // The job's backup never runs meanwhile (it waits for the verify), so the two share `progress`.
      onProgress: (p) => {
        job.progress = nextProgress(job.progress, p, clock.now());
      },
    });
  } catch (error) {
    result = failedToRun(error, clock.now() - started);
  }
  job.progress = null;
  v.state = 'idle';
  v.busyRetryAt = null;
  if (context.stopSignal.aborted) {
    log.warn('verify terminated because the scheduler is stopping');
    return [];
  }
  if (result.exitCode === EXIT_LOCKED) {
    v.busyRetryAt = clock.now() + BUSY_RETRY_MS;
    // A revision asked for is asked for still: it waits for the retry, not for the next scheduled slot.
    if (request.revision != null) v.revision = request.revision;
    log.info(
      {
        retryInSeconds: BUSY_RETRY_MS / 1000,
        ...(request.revision != null ? { revision: request.revision } : {}),
      },
      'the archive is busy; verifying when it is free',
    );
    return [];
  }
  await context.reread();
  // A revision verified by this run (its verified_at is the child's clock: allow for a step back).
  const found = job.summary.verify.damaged.filter((d) => d.verifiedAt >= started - 1000);
  const seconds = Math.round(result.durationMs / 100) / 10;
  if (result.ok || found.length > 0) {
    v.lastRun = started;
    v.failures = 0;
    v.lastFailure = null;
    v.lastResult = found.length > 0 ? 'damaged' : 'ok';
    if (found.length > 0)
      log.error(
        { revisions: found.map((d) => d.uuid), seconds },
        'verify found damaged revisions: distrusted',
      );
    else log.info({ seconds }, 'verify completed');
    job.runs = withRun(job.runs, {
      kind: 'verify',
      started,
      ended: clock.now(),
      outcome: v.lastResult,
      reason: found.length > 0 ? `damaged: ${found.map((d) => d.uuid).join(', ')}` : null,
      revision: request.revision ?? null,
    });
    return found.map((d) => d.uuid);
  }
  v.failures++;
  v.lastFailure = clock.now();
  v.lastResult = 'failed';
  job.runs = withRun(job.runs, {
    kind: 'verify',
    started,
    ended: clock.now(),
    outcome: 'failed',
    reason: reasonOf(result),
    revision: request.revision ?? null,
  });
  const retryIn = backoffSeconds(v.failures);
  log.error(
    { exitCode: result.exitCode, signal: result.signal, stderr: result.stderr, retryInSeconds: retryIn },
    `verify failed${result.exitCode != null ? ` with exit status ${result.exitCode}` : ''}; retrying in ${retryIn} s`,
  );
  return [];
}
