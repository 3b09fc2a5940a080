// What `backy check` answers, shared by its job checks (check.ts) and verify checks (verify-check.ts).

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
