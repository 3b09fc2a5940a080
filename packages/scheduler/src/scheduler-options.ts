import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { FleetGate } from './fleet-gate.js';
import type { NotifierFactory } from './job-notices.js';
import type { ConfigCheck, JobChanges } from './job-table.js';
import type { JobRunner } from './runner.js';

// What the daemon is started with, and what its commands answer (scheduler.ts).

export interface SchedulerOptions {
  /** Path of the central config (`/etc/backy.conf`). */
  configPath: string;
  logger: Logger;
  /** Runs backups, expiry, purge and callbacks (normally a ChildProcessRunner). */
  runner: JobRunner;
  /** Default: the system clock. */
  clock?: Clock;
  /** Aborting it stops the scheduler like `stop()`. */
  signal?: AbortSignal;
  /** Extra validation of a loaded config, e.g. each job's source options; throw a BackyError to reject it. */
  validate?: ConfigCheck;
  /** A job whose last backup took at least this many seconds counts as slow (default 600). */
  slowThresholdSeconds?: number;
  /** Milliseconds `stop()` waits for running work after terminating it (default 30 s). */
  stopTimeoutMs?: number;
  /** Longest sleep of the planning loop, so clock jumps are noticed (default 60 s). */
  maxSleepMs?: number;
  /** The completion callback is terminated after this many milliseconds (default 5 minutes). */
  callbackTimeoutMs?: number;
  /** Builds the notifier of the config's `notifications` (default: a Notifier; tests: one that counts). */
  notifier?: NotifierFactory;
  /** How long `stop()` waits for notifications still being sent (default 10 s). */
  notifyTimeoutMs?: number;
  /** Fleet mode (docs/fleet.md): which jobs are this server's, and their locks; none: every job is. */
  fleet?: FleetGate;
  /** Called when a backup or verify has finished and its archive was read again (e.g. to write metrics). */
  onWorkDone?: () => void;
}

export type ReloadResult = ({ ok: true } & JobChanges) | { ok: false; error: string };
export type RunNowResult = 'started' | 'queued' | 'already running' | 'unknown job' | 'stopping';
/** `verifyNow`'s answer; `not available`: the runner cannot verify. */
export type VerifyNowResult = RunNowResult | 'not available';
