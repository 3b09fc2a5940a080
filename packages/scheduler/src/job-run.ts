import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  archiveConfigSchema,
  BackyError,
  CONFIG_FILE,
  fromLegacyArchiveConfig,
  readRevisions,
  writeFileAtomic,
} from '@backy/core';
import type { Logger } from 'pino';
import { parse, stringify } from 'yaml';
import { type Clock, timeoutSignal } from './clock.js';
import { tagsToRun } from './job-plan.js';
import type { JobRuntime } from './job-table.js';
import type { JobRunner, RunResult } from './runner.js';
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
}

/** `backy backup`'s exit status when the archive is locked by another backup (EX_UNAVAILABLE). */
export const EXIT_LOCKED = 69;
/** How soon a job whose archive was busy looks again. */
export const BUSY_RETRY_MS = 30_000;

/**
 * Runs one backup of the job and, when it succeeds, expire, purge and the completion callback. Sets the
 * job's state, failures and last result on the way; 'stopped' when the scheduler stopped it midway.
 * Rereading the archive and planning the next run are the caller's.
 */
export async function runJobOnce(job: JobRuntime, context: JobRunContext): Promise<'done' | 'stopped'> {
  const { clock, log } = context;
  const started = clock.now();
  const tags = tagsToRun(job, started);
  job.runNow = false;
  job.state = 'running';
  job.abort = new AbortController();
  const signal = AbortSignal.any([job.abort.signal, context.stopSignal]);
  let result: RunResult;
  try {
    await writeArchiveConfig(job, log);
    signal.throwIfAborted();
    log.info({ tags }, 'backup started');
    result = await context.runner.backup({ job: job.name, dir: job.dir, tags, signal });
  } catch (error) {
    result = {
      ok: false,
      exitCode: null,
      signal: null,
      stderr: (error as Error).message,
      durationMs: clock.now() - started,
    };
  }
  job.lastResult = result;
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
  if (result.exitCode === EXIT_LOCKED) {
    // Another backup holds the archive (one by hand, or the child of a daemon killed with -9 that
    // still runs): not a failure. As backy 2.5 did, log it, do not back off, and look again shortly,
    // so the job runs soon after the other backup ends.
    job.busyRetryAt = clock.now() + BUSY_RETRY_MS;
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
    await finish(job, signal, context);
  } else {
    job.failures++;
    job.lastFailure = clock.now();
    const retryIn = backoffSeconds(job.failures);
    log.error(
      {
        tags,
        exitCode: result.exitCode,
        signal: result.signal,
        stderr: result.stderr,
        failures: job.failures,
        retryInSeconds: retryIn,
      },
      `backup failed with ${result.exitCode != null ? `exit status ${result.exitCode}` : result.signal != null ? `signal ${result.signal}` : 'an error'}; retrying in ${retryIn} s`,
    );
  }
  job.abort = null;
  return 'done';
}

/**
 * After a successful backup: expire, purge, the copy to `copy-to`, then the completion callback.
 * Failures are logged only: a backup that was made stays a success.
 */
async function finish(job: JobRuntime, signal: AbortSignal, context: JobRunContext): Promise<void> {
  const { runner, log } = context;
  const report = (what: string, result: RunResult) => {
    if (!result.ok && !signal.aborted) {
      log.warn({ exitCode: result.exitCode, signal: result.signal, stderr: result.stderr }, `${what} failed`);
    }
  };
  report('expire', await runner.expire({ job: job.name, dir: job.dir, signal }));
  if (signal.aborted) return;
  report('purge', await runner.purge({ job: job.name, dir: job.dir, signal }));
  const target = context.copyTarget();
  if (target != null && !signal.aborted) {
    const copied = await runner.copy({ job: job.name, dir: job.dir, target, signal });
    report(`copy to ${target}`, copied);
    if (copied.ok) log.info({ target }, 'revisions copied');
  }
  const program = context.callbackProgram();
  if (program == null || signal.aborted) return;
  let input: string;
  try {
    input = stringify(await readRevisions(job.dir));
  } catch (error) {
    log.warn({ err: error }, 'cannot read the revisions for the completion callback');
    return;
  }
  const limit = timeoutSignal(context.clock, context.callbackTimeoutMs);
  const result = await runner.callback({
    job: job.name,
    dir: job.dir,
    signal: AbortSignal.any([signal, limit.signal]),
    program,
    input,
  });
  limit.cancel();
  if (limit.signal.aborted)
    log.warn({ program }, 'backup-completed-callback took too long and was terminated');
  report('backup-completed-callback', result);
  if (result.ok) log.info({ program }, 'completion callback done');
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
