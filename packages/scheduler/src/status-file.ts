import { readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from '@backy/core';
import { parse } from 'yaml';
import type { OutcomeStatusFields } from './job-outcome.js';
import type { ProgressStatus } from './job-progress.js';

/**
 * One job in the status file (field names as in backy 2.x, plus trust and verification of the newest
 * revision and what the last run came to). The outcome fields are optional for files an older daemon
 * wrote; this daemon always writes them.
 */
export interface JobStatus extends Partial<OutcomeStatusFields>, VerifyStatusFields {
  job: string;
  sla: 'OK' | 'TOO OLD';
  /** Seconds beyond the SLA; 0 within it. */
  sla_overdue: number;
  /** `waiting`, `queued`, `running`, `finishing` or `failed`. */
  status: string;
  /** ISO time of the newest complete revision. */
  last_time: string | null;
  /** Comma-separated tags of the newest complete revision, shortest interval first. */
  last_tags: string | null;
  /** Seconds the newest complete revision took. */
  last_duration: number | null;
  next_time: string | null;
  next_tags: string | null;
  /** Comma-separated `manual:` tags found on the job's revisions. */
  manual_tags: string;
  /** Trust of the newest complete revision: `trusted`, `verified` or `distrusted`. */
  last_trust: string | null;
  /** Verification of the newest complete revision against its source: `ok`, `failed` or null. */
  last_verification: 'ok' | 'failed' | null;
  /** Comma-separated `.rev` files of the job that backy cannot read (kept; WARNING in `backy check`). */
  damaged_revisions?: string;
  /** `direct` when the newest revision's snapshot was crash-consistent (no fs freeze), else null. */
  last_snapshot?: string | null;
  /** True when the job has no revisions although its archive had some: its history is gone (CRITICAL). */
  history_lost?: boolean;
  /**
   * Fleet mode (docs/fleet.md): `assigned` (a live server with the job's labels runs it), `unassigned`
   * (none has them: WARNING) or `outage` (this server cannot reach Consul: no job starts here, WARNING).
   */
  fleet_state?: 'assigned' | 'unassigned' | 'outage';
  /** The server that runs the job's slots now (rendezvous hashing over the live servers), or null. */
  fleet_owner?: string | null;
  /** The server that runs the job now or ran it last (its Consul lock), or null: not yet. */
  fleet_server?: string | null;
  /** Why Consul cannot be used, with `fleet_state: outage`. */
  fleet_problem?: string;
  /** While a backup or a verify runs: its phase, bytes done and in all, rate and time left. */
  progress?: ProgressStatus;
  /** Complete revisions of the job. */
  revisions?: number;
  /**
   * What the newest complete revision's backup did (its `.rev`'s stats): bytes read from the source and
   * written to the store, chunks written anew and reused; null when it does not record them.
   */
  last_bytes_read?: number | null;
  last_bytes_written?: number | null;
  last_chunks_written?: number | null;
  last_chunks_reused?: number | null;
}

/** A job's scheduled verify job in the status file (verify-job.ts; `backy check` judges it in verify-check.ts). */
export interface VerifyStatusFields {
  /** `off` (no verify job), `waiting`, `queued` or `running`. */
  verify_status?: string;
  /** ISO time of the last verify run (this daemon's, or the newest `verified_at` of the revisions). */
  verify_last_time?: string | null;
  /** Outcome of this daemon's last verify run: `ok`, `damaged`, `failed`, or null. */
  verify_last_result?: 'ok' | 'damaged' | 'failed' | null;
  verify_next_time?: string | null;
  /** Comma-separated revisions a verify found damaged (distrusted): CRITICAL in `backy check`. */
  verify_damaged?: string;
  /** Revisions not verified within `outdated-after` + `interval` (never verified: since made): WARNING. */
  verify_overdue?: number;
  /** ISO time of the oldest verification among the revisions (or the revision's own time: never verified). */
  verify_oldest_time?: string | null;
}

const PLAIN = /^[A-Za-z_][A-Za-z0-9_.@+-]*$/;
const YAML_WORDS = /^(null|true|false|yes|no|on|off|y|n|~)$/i;

function yamlScalar(value: unknown): string {
  if (value == null) return 'null';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'null';
  if (typeof value === 'boolean') return String(value);
  // A nested entry (a running job's `progress`): JSON is a YAML flow mapping.
  if (typeof value === 'object') return JSON.stringify(value);
  const text = String(value);
  // A JSON string is a valid YAML double-quoted scalar.
  return PLAIN.test(text) && !YAML_WORDS.test(text) ? text : JSON.stringify(text);
}

/**
 * The status file's YAML, written by hand: the entries are flat, and the general YAML writer took
 * a few hundred milliseconds for a thousand jobs.
 */
export function formatStatus(jobs: readonly JobStatus[]): string {
  if (jobs.length === 0) return '[]\n';
  const out: string[] = [];
  for (const job of jobs) {
    let first = true;
    for (const [key, value] of Object.entries(job)) {
      out.push(`${first ? '- ' : '  '}${key}: ${yamlScalar(value)}\n`);
      first = false;
    }
  }
  return out.join('');
}

/** Writes the status file so that readers see either the old or the complete new list. */
export async function writeStatusFile(path: string, jobs: readonly JobStatus[]): Promise<void> {
  // The directory fsync is skipped: the file is rewritten every few seconds and a lost one is harmless.
  await writeFileAtomic(path, formatStatus(jobs), { syncDir: false });
}

export interface StatusFileContents {
  jobs: JobStatus[];
  mtimeMs: number;
}

/** Reads a status file; null if it does not exist. Throws on anything that is not a list of jobs. */
export async function readStatusFile(path: string): Promise<StatusFileContents | null> {
  let text: string;
  let mtimeMs: number;
  try {
    [text, { mtimeMs }] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  let data: unknown;
  try {
    data = parse(text) ?? [];
  } catch (error) {
    // The yaml package's messages say what and where; its `code` (BAD_INDENT, …) is no help to a reader.
    throw new Error(`not valid YAML: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
  if (
    !Array.isArray(data) ||
    data.some((j) => j == null || typeof j !== 'object' || typeof j.job !== 'string')
  ) {
    throw new Error('not a list of jobs');
  }
  return { jobs: data as JobStatus[], mtimeMs };
}
