import type { RevisionFacts, VerifyJobSettings } from '@backy/core';

// What the daemon knows of a job's scheduled verify job: the revisions' side (read with the archive
// summary) and its own. Apart from verify-job.ts, so that the job table and the archive summary can hold
// it without importing the planning.

/** What a job's revisions say about their verification, from the archive summary. */
export interface VerifySummary {
  /** Revisions that `backy verify` never re-read. */
  neverVerified: number;
  /** The oldest `verified_at` (ms) among the revisions that have one. */
  oldestVerifiedAt: number | null;
  /** The newest `verified_at` (ms): when a verify last ran here, as far as the revisions tell. */
  newestVerifiedAt: number | null;
  /** Per revision: its `verified_at` (ms), or null: never; with its own time, to tell how long it has gone unverified. */
  checks: { time: number; verifiedAt: number | null }[];
  /** Revisions that a verify found damaged (distrusted, with a `verified_at`), oldest first. */
  damaged: { uuid: string; time: number; verifiedAt: number }[];
}

export const EMPTY_VERIFY_SUMMARY: VerifySummary = {
  neverVerified: 0,
  oldestVerifiedAt: null,
  newestVerifiedAt: null,
  checks: [],
  damaged: [],
};

export function summarizeVerification(revisions: readonly RevisionFacts[]): VerifySummary {
  let neverVerified = 0;
  let oldest: number | null = null;
  let newest: number | null = null;
  const checks: VerifySummary['checks'] = [];
  const damaged: VerifySummary['damaged'] = [];
  for (const rev of revisions) {
    const at = rev.verifiedAt;
    checks.push({ time: rev.time, verifiedAt: at });
    if (at == null) {
      neverVerified++;
      continue;
    }
    if (oldest == null || at < oldest) oldest = at;
    if (newest == null || at > newest) newest = at;
    if (rev.trust === 'distrusted') damaged.push({ uuid: rev.uuid, time: rev.time, verifiedAt: at });
  }
  return { neverVerified, oldestVerifiedAt: oldest, newestVerifiedAt: newest, checks, damaged };
}

/** What the daemon keeps of a job's verify job between runs. */
export interface VerifyRuntime {
  state: 'idle' | 'queued' | 'running';
  /** The job's `verify` settings as of the last planning; null: it has no verify job. */
  settings: VerifyJobSettings | null;
  /** When this daemon first planned the job's verify job: its first slot is the one after it. */
  since: number | null;
  /** Start (ms) of this daemon's last verify run that succeeded, or of a due time with nothing to verify. */
  lastRun: number | null;
  /** The last run's outcome: `ok`, `damaged` (it distrusted a revision) or `failed`; null: none yet. */
  lastResult: 'ok' | 'damaged' | 'failed' | null;
  /** Failed runs since the last good one, and when the last one ended: retried with the backups' back-off. */
  failures: number;
  lastFailure: number | null;
  /** After the archive was busy (exit 69): when to look again. */
  busyRetryAt: number | null;
  queuedAt: number;
  /** The revision an operator asked to verify now (the API), or null: the scheduled verify of the outdated ones. */
  revision: string | null;
}

export function newVerifyRuntime(): VerifyRuntime {
  return {
    state: 'idle',
    settings: null,
    since: null,
    lastRun: null,
    lastResult: null,
    failures: 0,
    lastFailure: null,
    busyRetryAt: null,
    queuedAt: 0,
    revision: null,
  };
}
