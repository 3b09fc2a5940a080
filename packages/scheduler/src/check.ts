import { type CheckResult, formatCheckTime, NAGIOS, STATUS_MAX_AGE_MS } from './check-result.js';
import { isFailure } from './job-outcome.js';
import { type JobStatus, readStatusFile, type StatusFileContents } from './status-file.js';
import { addVerifyFindings } from './verify-check.js';

export { type CheckResult, formatCheckTime, NAGIOS, STATUS_MAX_AGE_MS };

/** A CRITICAL detail line as backy 2.x printed it, `web01 (last time: 2026-01-05 10:00:00 UTC)`, plus how late. */
function describe(job: JobStatus): string {
  const last = job.last_time == null ? 'never' : formatCheckTime(job.last_time);
  const overdue = job.sla_overdue > 0 ? `, overdue by ${job.sla_overdue}s` : '';
  return `${job.job} (last time: ${last})${overdue}`;
}

/** `backy check` is CRITICAL for a job whose runs failed this many times in a row (`global.critical-failures`). */
export const DEFAULT_CRITICAL_FAILURES = 3;

export interface CheckOptions {
  /**
   * The jobs of the central config: each one missing from the status file is CRITICAL (the daemon has
   * not loaded it), each one the status file has beyond them a WARNING. Default: not compared.
   */
  configuredJobs?: readonly string[];
  /** Named in the lines about configured jobs (default `the config`). */
  configPath?: string;
  /** Failed runs in a row from which a job is CRITICAL (default 3). */
  criticalFailures?: number;
}

/** What the last run did, in words, for the check's detail line. */
const OUTCOME_WORDS: Record<string, string> = {
  failed: 'backup failed',
  'verification-failed': 'backup failed verification',
  'copy-failed': 'copy failed',
  'skipped-busy': 'last run skipped',
};

/** The detail line of a job whose runs fail: what failed, why, and how often in a row. */
function describeFailure(job: JobStatus): string {
  const count = job.consecutive_failures ?? 0;
  const outcome = job.last_outcome ?? 'failed';
  const what = OUTCOME_WORDS[outcome] ?? outcome;
  const times = count > 1 ? ` (${count} times in a row)` : '';
  const never = job.last_time == null && job.last_success == null ? '; no successful backup yet' : '';
  return `${job.job}: ${what}${outcome === 'skipped-busy' ? ` after ${count} failed runs` : times}: ${job.last_reason ?? 'no reason recorded'}${never}`;
}

interface Finding {
  level: 'CRITICAL' | 'WARNING';
  summary: string;
  lines: string[];
}

/** Jobs whose newest revision is distrusted or failed verification, or with damaged revision files. */
function doubtfulFinding(jobs: readonly JobStatus[]): Finding | null {
  const damaged = (j: JobStatus) => (j.damaged_revisions ?? '').length > 0;
  const doubtful = jobs.filter(
    (j) => j.last_trust === 'distrusted' || j.last_verification === 'failed' || damaged(j),
  );
  if (doubtful.length === 0) return null;
  return {
    level: 'WARNING',
    summary: `${doubtful.length} jobs with a distrusted or unverified newest revision${jobs.some(damaged) ? ' or damaged revision files' : ''}`,
    lines: doubtful.flatMap((j) => [
      ...(j.last_trust === 'distrusted' || j.last_verification === 'failed'
        ? [
            `${j.job}: newest revision ${j.last_trust === 'distrusted' ? 'is distrusted' : 'failed verification'} (${j.last_time ?? 'unknown time'})`,
          ]
        : []),
      ...(damaged(j) ? [`${j.job}: damaged revision files kept: ${j.damaged_revisions}`] : []),
    ]),
  };
}

/**
 * Fleet mode: this server cannot reach Consul (no job starts here until it can), and jobs that no live
 * server may run (no live server has their labels). Both are WARNINGs: the other servers go on, and a
 * job that is late because of either is CRITICAL by its SLA anyway.
 */
function fleetFindings(jobs: readonly JobStatus[]): Finding[] {
  const out: Finding[] = [];
  const outage = jobs.find((j) => j.fleet_state === 'outage');
  if (outage != null)
    out.push({
      level: 'WARNING',
      summary: 'fleet: Consul out of reach, no job starts on this server',
      lines: [`fleet: ${outage.fleet_problem ?? 'Consul cannot be used'}`],
    });
  const unassigned = jobs.filter((j) => j.fleet_state === 'unassigned');
  if (unassigned.length > 0)
    out.push({
      level: 'WARNING',
      summary: `${unassigned.length} jobs unassigned in the fleet`,
      lines: unassigned.map((j) => `${j.job}: no live fleet server has the labels this job needs`),
    });
  return out;
}

/** The check's answer: the worst level, its findings' summaries on the first line, then every detail. */
function verdict(findings: readonly Finding[], jobCount: number): CheckResult {
  const worst = findings.some((f) => f.level === 'CRITICAL')
    ? 'CRITICAL'
    : findings.length > 0
      ? 'WARNING'
      : null;
  if (worst == null) return { exitCode: NAGIOS.OK, lines: [`OK: ${jobCount} jobs within SLA`] };
  const ordered = [
    ...findings.filter((f) => f.level === 'CRITICAL'),
    ...findings.filter((f) => f.level === 'WARNING'),
  ];
  return {
    exitCode: NAGIOS[worst],
    lines: [
      `${worst}: ${findings
        .filter((f) => f.level === worst)
        .map((f) => f.summary)
        .join('; ')}`,
      ...ordered.flatMap((f) => f.lines),
    ],
  };
}

/**
 * Judges the status file's contents (null: no file) at `nowMs`. Pure, so the rules are tested directly.
 * Every finding is listed; the worst decides the state, and its summaries make the first line.
 */
export function evaluateStatus(
  path: string,
  contents: StatusFileContents | null,
  nowMs: number,
  options: CheckOptions = {},
): CheckResult {
  if (contents == null)
    return { exitCode: NAGIOS.UNKNOWN, lines: [`UNKNOWN: No status file found at ${path}`] };
  if (nowMs - contents.mtimeMs > STATUS_MAX_AGE_MS) {
    return { exitCode: NAGIOS.CRITICAL, lines: ['CRITICAL: Status file is older than 5 minutes'] };
  }
  const jobs = contents.jobs;
  const limit = options.criticalFailures ?? DEFAULT_CRITICAL_FAILURES;
  const config = options.configPath ?? 'the config';
  const findings: Finding[] = [];
  const add = (
    level: Finding['level'],
    found: JobStatus[] | string[],
    summary: string,
    line: (j: never) => string,
  ) => {
    if (found.length > 0)
      findings.push({
        level,
        summary: `${found.length} ${summary}`,
        lines: found.map((j) => line(j as never)),
      });
  };

  // No revisions is fine before the first backup only; after it, the history is gone.
  const lost = jobs.filter((j) => j.history_lost === true);
  add(
    'CRITICAL',
    lost,
    'jobs lost their history',
    (j: JobStatus) => `${j.job}: no revisions left, although it has had some`,
  );
  if (options.configuredJobs != null) {
    // A job added to the config without a reload is never backed up: the daemon does not know it.
    const listed = new Set(jobs.map((j) => j.job));
    const missing = options.configuredJobs.filter((name) => !listed.has(name));
    add(
      'CRITICAL',
      missing,
      'jobs missing from the status file',
      (name: string) =>
        `${name}: configured in ${config} but not in the status file: the scheduler has not loaded it (reload or start it)`,
    );
  }
  const late = jobs.filter((j) => j.sla !== 'OK' && !lost.includes(j));
  add('CRITICAL', late, 'jobs not within SLA', describe);
  const failing = jobs.filter((j) => isFailure(j.last_outcome ?? null) || (j.consecutive_failures ?? 0) > 0);
  const often = failing.filter((j) => (j.consecutive_failures ?? 0) >= limit);
  add('CRITICAL', often, `jobs failed ${limit} or more times in a row`, describeFailure);
  add(
    'WARNING',
    failing.filter((j) => !often.includes(j)),
    'jobs whose last run failed',
    describeFailure,
  );
  // A job that never made a backup has nothing to restore: never OK, even while its first one runs.
  const never = jobs.filter(
    (j) =>
      j.last_time == null &&
      j.last_success == null &&
      ![lost, late, failing].some((listed) => listed.includes(j)),
  );
  add(
    'WARNING',
    never,
    'jobs without a successful backup yet',
    (j: JobStatus) => `${j.job}: no successful backup yet (status: ${j.status})`,
  );
  const doubtful = doubtfulFinding(jobs);
  if (doubtful != null) findings.push(doubtful);
  findings.push(...fleetFindings(jobs));
  if (options.configuredJobs != null) {
    const configured = new Set(options.configuredJobs);
    add(
      'WARNING',
      jobs.filter((j) => !configured.has(j.job)),
      'jobs not in the config',
      (j: JobStatus) =>
        `${j.job}: in the status file but not in ${config}: the scheduler has not reloaded it`,
    );
  }

  return verdict(findings, jobs.length);
}

/** Reads the status file and judges it; an unreadable file is UNKNOWN. */
export async function checkStatusFile(
  path: string,
  nowMs: number = Date.now(),
  options: CheckOptions = {},
): Promise<CheckResult> {
  let contents: StatusFileContents | null;
  try {
    contents = await readStatusFile(path);
  } catch (error) {
    // A system error by its code (EACCES, EISDIR), anything else by its message.
    const errno = error as NodeJS.ErrnoException;
    const why = errno.syscall != null && errno.code != null ? errno.code : errno.message;
    return { exitCode: NAGIOS.UNKNOWN, lines: [`UNKNOWN: Status file ${path} is unreadable: ${why}`] };
  }
  return addVerifyFindings(evaluateStatus(path, contents, nowMs, options), contents, nowMs);
}

/**
 * Judges the jobs as the daemon's HTTP API reports them (`GET /v1/status`), by the same rules as the
 * status file: the API answers from the running scheduler, so its view is as fresh as it gets.
 */
export function checkJobs(
  jobs: JobStatus[],
  nowMs: number = Date.now(),
  options: CheckOptions = {},
): CheckResult {
  const contents: StatusFileContents = { jobs, mtimeMs: nowMs };
  return addVerifyFindings(evaluateStatus('', contents, nowMs, options), contents, nowMs);
}
