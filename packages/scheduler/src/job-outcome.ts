import type { RunResult } from './runner.js';

// What each job's runs came to, kept by the daemon and shown by the status file, the telnet shell,
// `backy check` and the completion callback: one record, so every reader tells the same story.

/** What a job's run came to. */
export const RUN_OUTCOMES = ['ok', 'failed', 'verification-failed', 'copy-failed', 'skipped-busy'] as const;
/**
 * `ok`: backed up (and copied, with `copy-to`); `failed`: no new revision; `verification-failed`: a
 * revision was made but did not match its source and is distrusted; `copy-failed`: backed up, the copy
 * to `copy-to` failed; `skipped-busy`: another backup held the archive, nothing was done.
 */
export type RunOutcome = (typeof RUN_OUTCOMES)[number];

/** A job's record of its runs. Times are milliseconds since the epoch. */
export interface JobOutcome {
  /** The last run's outcome; null: no run recorded yet. */
  lastOutcome: RunOutcome | null;
  /** One line: why the last run did not succeed; null after `ok`. */
  reason: string | null;
  /** When the last run ended, or null. */
  lastRunAt: number | null;
  /** Runs in a row that ended `failed`, `verification-failed` or `copy-failed`; 0 after `ok`. */
  consecutiveFailures: number;
  /** When the last backup that made a trusted revision ended (`ok` or `copy-failed`), or null. */
  lastSuccessAt: number | null;
}

/** One run of a job as the API lists it (`GET /v1/jobs/JOB/runs`); times in ms since the epoch. */
export type RunRecord =
  | {
      kind: 'backup';
      started: number;
      ended: number;
      outcome: RunOutcome;
      reason: string | null;
      tags: string[];
    }
  | {
      kind: 'verify';
      started: number;
      ended: number;
      outcome: 'ok' | 'damaged' | 'failed';
      reason: string | null;
      /** The revision asked for, or null: the scheduled verify of the outdated ones. */
      revision: string | null;
    };

/** How many runs of a job the daemon remembers (newest first; since it started). */
export const RECENT_RUNS = 20;

/** `runs` with `run` in front, the oldest beyond RECENT_RUNS dropped. Pure. */
export function withRun(runs: readonly RunRecord[], run: RunRecord): RunRecord[] {
  return [run, ...runs].slice(0, RECENT_RUNS);
}

export const NO_OUTCOME: JobOutcome = {
  lastOutcome: null,
  reason: null,
  lastRunAt: null,
  consecutiveFailures: 0,
  lastSuccessAt: null,
};

/** Outcomes that count as a failed run (a busy archive does not: nothing was tried). */
export function isFailure(outcome: RunOutcome | null): boolean {
  return outcome === 'failed' || outcome === 'verification-failed' || outcome === 'copy-failed';
}

/** The record after a run that ended at `at`. Pure. */
export function recordOutcome(
  previous: JobOutcome,
  outcome: RunOutcome,
  reason: string | null,
  at: number,
): JobOutcome {
  const next: JobOutcome = {
    ...previous,
    lastOutcome: outcome,
    reason: outcome === 'ok' ? null : reason,
    lastRunAt: at,
  };
  if (outcome === 'ok' || outcome === 'copy-failed') next.lastSuccessAt = at;
  if (outcome === 'ok') next.consecutiveFailures = 0;
  else if (isFailure(outcome)) next.consecutiveFailures = previous.consecutiveFailures + 1;
  return next;
}

const REASON_MAX = 300;
const ERROR_LINE = /^backy: (?:error: |(internal error: ))(.*)$/;

/**
 * One line saying why a child failed: the CLI's own error line (`backy: error: …`, its one line for
 * every failure), else the last line of its stderr, else its exit status or signal.
 */
export function reasonOf(result: RunResult): string {
  const lines = result.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  let reason: string | undefined;
  for (let i = lines.length - 1; i >= 0 && reason == null; i--) {
    const match = ERROR_LINE.exec(lines[i]!);
    if (match != null) reason = `${match[1] ?? ''}${match[2]}`;
  }
  reason ??=
    lines.at(-1) ??
    (result.exitCode != null
      ? `exit status ${result.exitCode}`
      : result.signal != null
        ? `terminated by ${result.signal}`
        : 'unknown error');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
  const flat = reason.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return flat.length > REASON_MAX ? `${flat.slice(0, REASON_MAX - 1)}…` : flat;
}

/** The record's fields in the status file (snake_case, as its other fields). */
export interface OutcomeStatusFields {
  /** See RunOutcome; null: no run recorded yet. */
  last_outcome: RunOutcome | null;
  /** One line: why the last run did not succeed; null after `ok`. */
  last_reason: string | null;
  /** ISO time the last run ended. */
  last_run: string | null;
  /** Failed runs in a row (`backy check`: CRITICAL from `global.critical-failures` on). */
  consecutive_failures: number;
  /** ISO time the last successful backup ended. */
  last_success: string | null;
}

const iso = (ms: number | null) => (ms == null ? null : new Date(ms).toISOString());

export function outcomeStatusFields(outcome: JobOutcome): OutcomeStatusFields {
  return {
    last_outcome: outcome.lastOutcome,
    last_reason: outcome.reason,
    last_run: iso(outcome.lastRunAt),
    consecutive_failures: outcome.consecutiveFailures,
    last_success: iso(outcome.lastSuccessAt),
  };
}

/**
 * The record back from a status file entry (as an earlier daemon wrote it), so a restart does not
 * forget that a job was failing; missing or malformed fields read as unknown.
 */
export function outcomeFromStatus(entry: Partial<Record<keyof OutcomeStatusFields, unknown>>): JobOutcome {
  const time = (value: unknown) => {
    const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
    return Number.isNaN(ms) ? null : ms;
  };
  const outcome = RUN_OUTCOMES.find((o) => o === entry.last_outcome) ?? null;
  const failures = entry.consecutive_failures;
  return {
    lastOutcome: outcome,
    reason: outcome == null || typeof entry.last_reason !== 'string' ? null : entry.last_reason,
    lastRunAt: time(entry.last_run),
    consecutiveFailures:
      typeof failures === 'number' && Number.isSafeInteger(failures) && failures > 0 ? failures : 0,
    lastSuccessAt: time(entry.last_success),
  };
}
