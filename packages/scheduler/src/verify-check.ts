import { type CheckResult, formatCheckTime, NAGIOS, STATUS_MAX_AGE_MS } from './check-result.js';
import type { StatusFileContents } from './status-file.js';

// What `backy check` says about the scheduled verify jobs, added to the backups' verdict (check.ts):
// damage a verify found is CRITICAL (backed-up data is lost until a backup writes the chunks again),
// revisions left unverified too long are WARNING (the verify jobs are behind or failing).

/** The backups' verdict with the verify jobs' findings added; a missing or stale status file is left as it is. */
export function addVerifyFindings(
  result: CheckResult,
  contents: StatusFileContents | null,
  nowMs: number,
): CheckResult {
  if (contents == null || nowMs - contents.mtimeMs > STATUS_MAX_AGE_MS) return result;
  const damaged = contents.jobs.filter((j) => (j.verify_damaged ?? '') !== '');
  const overdue = contents.jobs.filter((j) => (j.verify_overdue ?? 0) > 0);
  if (damaged.length === 0 && overdue.length === 0) return result;
  const damageLines = damaged.flatMap((j) =>
    j.verify_damaged!.split(', ').map((uuid) => `${j.job}: revision ${uuid} is damaged (found by verify)`),
  );
  const overdueLines = overdue.map(
    (j) =>
      `${j.job}: ${j.verify_overdue} revisions not verified within outdated-after + interval (oldest: ${
        j.verify_oldest_time == null ? 'unknown' : formatCheckTime(j.verify_oldest_time)
      })`,
  );
  const level = damaged.length > 0 ? NAGIOS.CRITICAL : NAGIOS.WARNING;
  const details = [...damageLines, ...overdueLines];
  if (result.exitCode !== NAGIOS.OK && result.exitCode >= level)
    return { exitCode: result.exitCode, lines: [...result.lines, ...details] };
  const summary =
    damaged.length > 0
      ? `CRITICAL: ${damaged.length} jobs with revisions found damaged by verify`
      : `WARNING: ${overdue.length} jobs with revisions not verified in time`;
  // The backups' own findings stay as details; their summary line gives way to the graver one.
  const earlier = result.lines.slice(1);
  return { exitCode: level, lines: [summary, ...details, ...earlier] };
}
