import { type JobStatus, readStatusFile, type StatusFileContents } from './status-file.js';
import { addVerifyFindings } from './verify-check.js';

/** Nagios plugin exit statuses. */
export const NAGIOS = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;

export interface CheckResult {
  exitCode: 0 | 1 | 2 | 3;
  /** The first line is the summary Nagios shows; the rest are details. */
  lines: string[];
}

/** A status file older than this means the daemon is not running (or stuck). */
export const STATUS_MAX_AGE_MS = 5 * 60_000;

/** `2026-01-05 10:00:00 UTC`: the time as backy 2.x's check printed it (UTC everywhere, docs/scheduler.md). */
export function formatCheckTime(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return `${date
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '')} UTC`;
}

/** A CRITICAL detail line as backy 2.x printed it, `web01 (last time: 2026-01-05 10:00:00 UTC)`, plus how late. */
function describe(job: JobStatus): string {
  const last = job.last_time == null ? 'never' : formatCheckTime(job.last_time);
  const overdue = job.sla_overdue > 0 ? `, overdue by ${job.sla_overdue}s` : '';
  return `${job.job} (last time: ${last})${overdue}`;
}

/** Judges the status file's contents (null: no file) at `nowMs`. Pure, so the rules are tested directly. */
export function evaluateStatus(
  path: string,
  contents: StatusFileContents | null,
  nowMs: number,
): CheckResult {
  if (contents == null)
    return { exitCode: NAGIOS.UNKNOWN, lines: [`UNKNOWN: No status file found at ${path}`] };
  if (nowMs - contents.mtimeMs > STATUS_MAX_AGE_MS) {
    return { exitCode: NAGIOS.CRITICAL, lines: ['CRITICAL: Status file is older than 5 minutes'] };
  }
  const jobs = contents.jobs;
  // No revisions is fine before the first backup only; after it, the history is gone.
  const lost = jobs.filter((j) => j.history_lost === true);
  if (lost.length > 0) {
    return {
      exitCode: NAGIOS.CRITICAL,
      lines: [
        `CRITICAL: ${lost.length} jobs lost their history`,
        ...lost.map((j) => `${j.job}: no revisions left, although it has had some`),
        ...jobs.filter((j) => j.sla !== 'OK' && !lost.includes(j)).map(describe),
      ],
    };
  }
  const late = jobs.filter((j) => j.sla !== 'OK');
  const damaged = (j: JobStatus) => (j.damaged_revisions ?? '').length > 0;
  const doubtful = jobs.filter(
    (j) => j.last_trust === 'distrusted' || j.last_verification === 'failed' || damaged(j),
  );
  const doubtLines = doubtful.flatMap((j) => [
    ...(j.last_trust === 'distrusted' || j.last_verification === 'failed'
      ? [
          `${j.job}: newest revision ${j.last_trust === 'distrusted' ? 'is distrusted' : 'failed verification'} (${j.last_time ?? 'unknown time'})`,
        ]
      : []),
    ...(damaged(j) ? [`${j.job}: damaged revision files kept: ${j.damaged_revisions}`] : []),
  ]);
  if (late.length > 0) {
    return {
      exitCode: NAGIOS.CRITICAL,
      lines: [`CRITICAL: ${late.length} jobs not within SLA`, ...late.map(describe), ...doubtLines],
    };
  }
  if (doubtful.length > 0) {
    return {
      exitCode: NAGIOS.WARNING,
      lines: [
        `WARNING: ${doubtful.length} jobs with a distrusted or unverified newest revision${jobs.some(damaged) ? ' or damaged revision files' : ''}`,
        ...doubtLines,
      ],
    };
  }
  return { exitCode: NAGIOS.OK, lines: [`OK: ${jobs.length} jobs within SLA`] };
}

/** Reads the status file and judges it; an unreadable file is UNKNOWN. */
export async function checkStatusFile(path: string, nowMs: number = Date.now()): Promise<CheckResult> {
  let contents: StatusFileContents | null;
  try {
    contents = await readStatusFile(path);
  } catch (error) {
    // A system error by its code (EACCES, EISDIR), anything else by its message.
    const errno = error as NodeJS.ErrnoException;
    const why = errno.syscall != null && errno.code != null ? errno.code : errno.message;
    return { exitCode: NAGIOS.UNKNOWN, lines: [`UNKNOWN: Status file ${path} is unreadable: ${why}`] };
  }
  return addVerifyFindings(evaluateStatus(path, contents, nowMs), contents, nowMs);
}
