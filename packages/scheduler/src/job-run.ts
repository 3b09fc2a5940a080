import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  archiveConfigSchema,
  BackyError,
  CONFIG_FILE,
  fromLegacyArchiveConfig,
  readRevisions,
  scanRevisionFacts,
  writeFileAtomic,
} from '@backy/core';
import type { Logger } from 'pino';
import { parse, stringify } from 'yaml';
import { type Clock, timeoutSignal } from './clock.js';
import type { JobClaim } from './fleet-gate.js';
import { type RunOutcome, reasonOf, recordOutcome, withRun } from './job-outcome.js';
import { tagsToRun } from './job-plan.js';
import { nextProgress } from './job-progress.js';
import type { JobRuntime } from './job-table.js';
import { failedToRun, type JobRunner, type RunResult } from './runner.js';
import { backoffSeconds } from './schedule-math.js';

export interface JobRunContext {
  runner: JobRunner;
  clock: Clock;
  /** The job's logger (`logger.child({ job })`). */
  log: Logger;
  /** Aborted when the scheduler stops: the work is terminated and counts neither as success nor failure. */
  stopSignal: AbortSignal;
  /** `global.backup-completed-callback` of the config in force when the backup ends. */
  callbackProgram: () => string | undefined;
  /** The job's `copy-to` archive in the config in force when the backup ends, or null. */
  copyTarget: () => string | null;
  /** The completion callback is terminated after this many milliseconds. */
  callbackTimeoutMs: number;
  /** Fleet mode: the job's lock, whose token the backup commits under; losing it stops the backup. */
  fleet?: JobClaim | null;
}

/** `backy backup`'s exit status when the archive is locked by another backup (EX_UNAVAILABLE). */
export const EXIT_LOCKED = 69;
/** `backy backup --if-newest`'s exit status when the store has a newer revision (EX_TEMPFAIL). */
export const EXIT_SUPERSEDED = 75;
/** How soon a job whose archive was busy looks again. */
export const BUSY_RETRY_MS = 30_000;

/**
 * Runs one backup of the job and, when it succeeds, expire, purge and the copy; then (success or
 * failure) the completion callback. Sets the job's state, failures, outcome and last result on the way;
 * 'stopped' when the scheduler stopped it midway.
 * Rereading the archive and planning the next run are the caller's.
 */
/** The run that just ended, as the job's outcome now records it, into its recent runs. */
function remember(job: JobRuntime, started: number, tags: string[], ended: number): void {
  const { lastOutcome, reason } = job.outcome;
  job.runs = withRun(job.runs, { kind: 'backup', started, ended, outcome: lastOutcome!, reason, tags });
}

export async function runJobOnce(job: JobRuntime, context: JobRunContext): Promise<'done' | 'stopped'> {
  const { clock, log } = context;
  const started = clock.now();
  const tags = tagsToRun(job, started);
  job.runNow = false;
  job.state = 'running';
  job.abort = new AbortController();
  const fleet = context.fleet ?? null;
  const signal = AbortSignal.any([job.abort.signal, context.stopSignal, ...(fleet ? [fleet.lost] : [])]);
  let result: RunResult;
  try {
    await writeArchiveConfig(job, log);
    signal.throwIfAborted();
    log.info({ tags }, 'backup started');
    result = await context.runner.backup({
      job: job.name,
      dir: job.dir,
      tags,
      signal,
      // The slot is due as this server's directory tells; the backup checks that against the store.
      ...(fleet != null
        ? { fence: fleet.token, ifNewest: job.summary.newest?.uuid ?? 'none', attach: true }
        : {}),
      onProgress: (p) => {
        job.progress = nextProgress(job.progress, p, clock.now());
      },
    });
  } catch (error) {
    result = failedToRun(error, clock.now() - started);
  }
  job.lastResult = result;
  job.progress = null;
  if (context.stopSignal.aborted) {
    log.warn(
      { exitCode: result.exitCode, signal: result.signal },
      'backup terminated because the scheduler is stopping',
    );
    job.state = 'waiting';
    job.abort = null;
    return 'stopped';
  }
  job.busyRetryAt = null;
  if (fleet?.lost.aborted === true) {
    // The job is another server's now (fleet mode): no failure of its own, and no back-off here.
    log.warn({ tags }, "backup stopped: this server lost the job's fleet lock; another server takes it");
    job.state = 'waiting';
    job.abort = null;
    return 'done';
  }
  if (result.exitCode === EXIT_SUPERSEDED && (await supersededMeanwhile(job))) {
    // Another fleet server made a revision since this one's directory was read (the backup pulled it
    // in): the caller reads the archive again and plans from it. Not a run of this server's.
    log.info({ tags }, 'another fleet server backed the job up meanwhile; nothing to do');
    job.state = 'waiting';
  } else if (result.exitCode === EXIT_LOCKED) {
    // Another backup holds the archive (one by hand, or the child of a daemon killed with -9 that
    // still runs): not a failure. As backy 2.5 did, log it, do not back off, and look again shortly,
    // so the job runs soon after the other backup ends.
    job.busyRetryAt = clock.now() + BUSY_RETRY_MS;
    job.outcome = recordOutcome(job.outcome, 'skipped-busy', BUSY_REASON, clock.now());
    remember(job, started, tags, clock.now());
    log.info(
      { tags, retryInSeconds: BUSY_RETRY_MS / 1000 },
      'the archive is busy with another backup; trying again when it has ended',
    );
  } else if (result.ok) {
    job.failures = 0;
    job.lastFailure = null;
    for (const tag of tags) job.ranAt[tag] = started;
    log.info({ tags, seconds: Math.round(result.durationMs / 100) / 10 }, 'backup completed');
    job.state = 'finishing';
    const copyFailure = await finish(job, signal, context);
    job.outcome = recordOutcome(
      job.outcome,
      copyFailure == null ? 'ok' : 'copy-failed',
      copyFailure,
      clock.now(),
    );
    remember(job, started, tags, clock.now());
    await completionCallback(job, tags, signal, context);
  } else {
    const { outcome, reason } = await classifyFailure(job, result);
    job.failures++;
    job.lastFailure = clock.now();
    job.outcome = recordOutcome(job.outcome, outcome, reason, clock.now());
    remember(job, started, tags, clock.now());
    const retryIn = backoffSeconds(job.failures);
    log.error(
      {
        tags,
        exitCode: result.exitCode,
        signal: result.signal,
        stderr: result.stderr,
        outcome,
        reason,
        failures: job.failures,
        retryInSeconds: retryIn,
      },
      `backup failed with ${result.exitCode != null ? `exit status ${result.exitCode}` : result.signal != null ? `signal ${result.signal}` : 'an error'}; retrying in ${retryIn} s`,
    );
    // The callback holds the worker, as after a success.
    job.state = 'finishing';
    await completionCallback(job, tags, signal, context);
  }
  job.abort = null;
  return 'done';
}

const BUSY_REASON = 'another backup holds the archive';

/**
 * Whether the directory now has a newest revision other than the one the backup was told to expect:
 * else its SUPERSEDED would come again at once (the CLI and this scheduler disagreeing on which revision
 * is the newest), so it counts as a failure, which backs off and shows.
 */
async function supersededMeanwhile(job: JobRuntime): Promise<boolean> {
  try {
    return (await scanRevisionFacts(job.dir)).facts.at(-1)?.uuid !== job.summary.newest?.uuid;
  } catch {
    return false;
  }
}

/**
 * A failed backup that left a new revision whose verification against the source failed (the CLI
 * exits 1 and keeps it, distrusted) is `verification-failed`; anything else is `failed`. The archive
 * itself tells, so no output format of the child is relied on.
 */
async function classifyFailure(
  job: JobRuntime,
  result: RunResult,
): Promise<{ outcome: RunOutcome; reason: string }> {
  if (result.exitCode === 1) {
    try {
      const newest = (await scanRevisionFacts(job.dir)).facts.at(-1);
      if (newest != null && newest.uuid !== job.summary.newest?.uuid && newest.verification === 'failed') {
        return {
          outcome: 'verification-failed',
          reason: `revision ${newest.uuid} does not match its source and is distrusted`,
        };
      }
    } catch {
      // Unreadable revisions: the child's own words below say what went wrong.
    }
  }
  return { outcome: 'failed', reason: reasonOf(result) };
}

/**
 * Whether the central config gives the job an append-only store (`store.append-only`) without admin
 * credentials: its expire and purge can only fail then (they must delete), so they are not run.
 */
function appendOnlyWithoutAdmin(job: JobRuntime): boolean {
  const store = job.archiveConfig.store as Record<string, unknown> | undefined;
  return (
    store?.['append-only'] === true &&
    store['admin-credentials-file'] == null &&
    store['admin-profile'] == null
  );
}

/**
 * After a successful backup: expire, purge and the copy to `copy-to`. Failures are logged only: a
 * backup that was made stays a success. Returns why the copy failed, or null.
 */
async function finish(job: JobRuntime, signal: AbortSignal, context: JobRunContext): Promise<string | null> {
  const { runner, log } = context;
  const report = (what: string, result: RunResult) => {
    if (!result.ok && !signal.aborted) {
      log.warn({ exitCode: result.exitCode, signal: result.signal, stderr: result.stderr }, `${what} failed`);
    }
  };
  if (appendOnlyWithoutAdmin(job)) {
    // They would fail every time, each a warning about nothing new (docs/immutable-backups.md).
    log.info('expire and purge skipped: the store is append-only and no admin credentials are configured');
  } else {
    report('expire', await runner.expire({ job: job.name, dir: job.dir, signal }));
    if (signal.aborted) return null;
    report('purge', await runner.purge({ job: job.name, dir: job.dir, signal }));
  }
  const target = context.copyTarget();
  if (target == null || signal.aborted) return null;
  const copied = await runner.copy({ job: job.name, dir: job.dir, target, signal });
  report(`copy to ${target}`, copied);
  if (copied.ok) log.info({ target }, 'revisions copied');
  // A copy cut short because the scheduler stops has not failed.
  return copied.ok || signal.aborted ? null : `${target}: ${reasonOf(copied)}`;
}

/**
 * The completion callback, after every backup that was tried (not after a busy archive): `program JOB`
 * with the job's revisions as YAML on stdin, and the outcome in its environment.
 */
async function completionCallback(
  job: JobRuntime,
  tags: readonly string[],
  signal: AbortSignal,
  context: JobRunContext,
): Promise<void> {
  const { runner, log } = context;
  const program = context.callbackProgram();
  if (program == null || signal.aborted) return;
  let input: string;
  try {
    input = stringify(await readRevisions(job.dir));
  } catch (error) {
    // A failed run may leave no readable archive; the callback still hears of the failure.
    log.warn({ err: error }, 'cannot read the revisions for the completion callback; it gets an empty list');
    input = '[]\n';
  }
  const limit = timeoutSignal(context.clock, context.callbackTimeoutMs);
  const result = await runner.callback({
    job: job.name,
    dir: job.dir,
    signal: AbortSignal.any([signal, limit.signal]),
    program,
    input,
    env: callbackEnvironment(job, tags),
  });
  limit.cancel();
  if (limit.signal.aborted)
    log.warn({ program }, 'backup-completed-callback took too long and was terminated');
  if (!result.ok && !signal.aborted)
    log.warn(
      { exitCode: result.exitCode, signal: result.signal, stderr: result.stderr },
      'backup-completed-callback failed',
    );
  if (result.ok) log.info({ program }, 'completion callback done');
}

/** The completion callback's environment: the outcome of the run (docs/scheduler.md). */
export function callbackEnvironment(job: JobRuntime, tags: readonly string[]): Record<string, string> {
  const { outcome } = job;
  return {
    BACKY_JOB: job.name,
    BACKY_TAGS: tags.join(','),
    BACKY_OUTCOME: outcome.lastOutcome ?? '',
    BACKY_REASON: outcome.reason ?? '',
    BACKY_CONSECUTIVE_FAILURES: String(outcome.consecutiveFailures),
    BACKY_LAST_SUCCESS: outcome.lastSuccessAt == null ? '' : new Date(outcome.lastSuccessAt).toISOString(),
  };
}

/**
 * Writes the job's effective archive config, so that `backy` run by hand in the job's directory does
 * what the daemon does. Keys the central config does not set (store, layout) are kept.
 */
async function writeArchiveConfig(job: JobRuntime, log: Logger): Promise<void> {
  await mkdir(job.dir, { recursive: true, mode: 0o750 });
  const path = join(job.dir, CONFIG_FILE);
  let existing: Record<string, unknown> = {};
  try {
    const parsed = parse(await readFile(path, 'utf8'));
    // backy 2.x wrote the bare source mapping: read as {source: …}, so its keys are not taken as ours.
    const current = fromLegacyArchiveConfig(parsed);
    if (current != null && typeof current === 'object' && !Array.isArray(current))
      existing = current as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      log.warn({ path }, 'existing archive config is unreadable; replacing it');
    }
  }
  // The central config's layout and store (per job or global) win; without them the archive's own stay.
  const config = { ...existing, ...job.archiveConfig };
  const check = archiveConfigSchema.safeParse(config);
  if (!check.success) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${path}: the merged archive config is invalid: ${check.error.issues[0]?.message}`,
    );
  }
  const text = stringify(config);
  if (Object.keys(existing).length > 0 && stringify(existing) === text) return;
  await writeFileAtomic(path, text);
}
