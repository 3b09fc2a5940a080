import { join } from 'node:path';
import {
  BackyError,
  type JobConfig,
  type LoadedCentralConfig,
  loadCentralConfig,
  type Schedule,
} from '@backy/core';
import type { Logger } from 'pino';
import { type ArchiveSummary, ArchiveWatcher, EMPTY_SUMMARY } from './archive-state.js';
import { type JobOutcome, NO_OUTCOME, type RunRecord } from './job-outcome.js';
import type { JobProgress } from './job-progress.js';
import type { RunResult } from './runner.js';
import type { PlannedRun } from './schedule-math.js';
import { newVerifyRuntime, type VerifyRuntime } from './verify-summary.js';

export type JobState = 'waiting' | 'queued' | 'running' | 'finishing' | 'failed';
export const JOB_STATES: readonly JobState[] = ['waiting', 'queued', 'running', 'finishing', 'failed'];

/** The archive config written before each run: the job's source and schedule as the user wrote them. */
export interface ArchiveConfigInput {
  source: unknown;
  schedule: unknown;
  layout?: unknown;
  store?: unknown;
  retention?: unknown;
}

/** One job of the central config as the daemon keeps it between runs. */
export interface JobRuntime {
  name: string;
  dir: string;
  config: JobConfig;
  schedule: Schedule;
  archiveConfig: ArchiveConfigInput;
  fingerprint: string;
  state: JobState;
  summary: ArchiveSummary;
  /** Tag → start (ms) of runs this daemon made, in case expiry removed the tag from the archive. */
  ranAt: Record<string, number>;
  failures: number;
  lastFailure: number | null;
  /** After the archive was found busy (another backup holds it): when to look again, or null. */
  busyRetryAt: number | null;
  lastResult: RunResult | null;
  /** What its runs came to: last outcome and reason, failures in a row, last success. */
  outcome: JobOutcome;
  /** Its recent runs, newest first (backups and verifies; in memory, since the daemon started). */
  runs: RunRecord[];
  plan: PlannedRun | null;
  /** Set by `run JOB`: start now with the next tags. */
  runNow: boolean;
  queuedAt: number;
  /** Gone from the config while it ran: dropped once the run ends. */
  removed: boolean;
  slow: boolean;
  abort: AbortController | null;
  /** While a backup or a verify runs: how far it is (job-progress.ts); null otherwise. */
  progress: JobProgress | null;
  /** The job's scheduled verify job (verify-job.ts). */
  verify: VerifyRuntime;
}

/** The job names a reload added, removed and changed (source, schedule, layout or store). */
export interface JobChanges {
  added: string[];
  removed: string[];
  changed: string[];
}

/** Running or finishing (expire, purge, callback): the job holds a worker. */
export function isBusy(job: JobRuntime): boolean {
  return job.state === 'running' || job.state === 'finishing';
}

/** The caller's own checks of a loaded config (each job's source options); throws a BackyError to reject it. */
export type ConfigCheck = (loaded: LoadedCentralConfig) => void | Promise<void>;

/** Reads and validates the central config, with the caller's `validate` on top. */
export async function loadJobConfig(path: string, validate?: ConfigCheck): Promise<LoadedCentralConfig> {
  const loaded = await loadCentralConfig(path);
  await validate?.(loaded);
  return loaded;
}

/**
 * Reads the config again to replace `current`: throws if it is invalid or moves base-dir (which takes a
 * restart), and warns about the settings that only a restart applies.
 */
export async function loadReloadedConfig(
  path: string,
  validate: ConfigCheck | undefined,
  current: LoadedCentralConfig,
  log: Logger,
): Promise<LoadedCentralConfig> {
  const loaded = await loadJobConfig(path, validate);
  const before = current.config.global;
  const after = loaded.config.global;
  if (after['base-dir'] !== before['base-dir']) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${loaded.path}: global.base-dir cannot change while the scheduler runs; restart it`,
    );
  }
  const telnetKeys = [
    'telnet-addrs',
    'telnet-port',
    'telnet-socket',
    'telnet-socket-group',
    'telnet-token-file',
    'telnet-insecure-tcp',
  ] as const;
  const changed = telnetKeys.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
  if (changed.length > 0) {
    log.warn({ keys: changed }, `${changed.join(', ')}: changes take effect when the scheduler restarts`);
  }
  return loaded;
}

/** The central config's settings for one job's archive; durations stay as the user wrote them. */
function archiveConfigOf(loaded: LoadedCentralConfig, name: string, job: JobConfig): ArchiveConfigInput {
  const rawJob = ((loaded.raw.jobs ?? {}) as Record<string, Record<string, unknown>>)[name];
  const rawGlobal = (loaded.raw.global ?? {}) as Record<string, unknown>;
  const rawSchedules = (loaded.raw.schedules ?? {}) as Record<string, unknown>;
  const layout = rawJob?.layout ?? rawGlobal.layout;
  const store = rawJob?.store ?? perJobStore(rawGlobal.store, name);
  const retention = rawJob?.retention ?? rawGlobal.retention;
  return {
    source: rawJob?.source ?? job.source,
    schedule: rawSchedules[job.schedule],
    ...(retention == null ? {} : { retention }),
    ...(layout == null ? {} : { layout }),
    ...(store == null ? {} : { store }),
  };
}

/**
 * `global.store` for one job: as written for the local directory (a relative path is per archive
 * anyway), and for an object store under a prefix of the job's own (`<prefix><job>/`), since a prefix
 * holds one archive.
 */
function perJobStore(store: unknown, job: string): unknown {
  if (store == null || typeof store !== 'object') return store;
  const { type, prefix } = store as { type?: unknown; prefix?: unknown };
  if (type == null || type === 'directory') return store;
  return { ...store, prefix: `${typeof prefix === 'string' ? prefix : ''}${job}/` };
}

function newJob(
  name: string,
  dir: string,
  fields: Pick<JobRuntime, 'config' | 'schedule' | 'archiveConfig' | 'fingerprint'>,
): JobRuntime {
  return {
    name,
    dir,
    ...fields,
    state: 'waiting',
    summary: EMPTY_SUMMARY,
    ranAt: {},
    failures: 0,
    lastFailure: null,
    busyRetryAt: null,
    lastResult: null,
    outcome: NO_OUTCOME,
    runs: [],
    plan: null,
    runNow: false,
    queuedAt: 0,
    removed: false,
    slow: false,
    abort: null,
    progress: null,
    verify: newVerifyRuntime(),
  };
}

/** The jobs of the central config, by name, with what the daemon knows of each one's archive. */
export class JobTable {
  private readonly byName = new Map<string, JobRuntime>();
  private readonly archives = new ArchiveWatcher();
  private readonly log: Logger;
  private readonly slowThresholdSeconds: number;

  constructor(options: { log: Logger; slowThresholdSeconds: number }) {
    this.log = options.log;
    this.slowThresholdSeconds = options.slowThresholdSeconds;
  }

  get size(): number {
    return this.byName.size;
  }

  get(name: string): JobRuntime | undefined {
    return this.byName.get(name);
  }

  values(): IterableIterator<JobRuntime> {
    return this.byName.values();
  }

  /** Drops a job that was removed from the config while it ran. */
  delete(name: string): void {
    this.byName.delete(name);
  }

  /** Adds, updates and removes jobs; running backups are left alone and pick up changes next time. */
  apply(loaded: LoadedCentralConfig): JobChanges {
    const { config } = loaded;
    const changes: JobChanges = { added: [], removed: [], changed: [] };
    for (const [name, jobConfig] of Object.entries(config.jobs)) {
      const archiveConfig = archiveConfigOf(loaded, name, jobConfig);
      const schedule = config.schedules[jobConfig.schedule]!;
      const fields = {
        config: jobConfig,
        schedule,
        archiveConfig,
        // Fleet labels decide which server runs the job: a change of them alone is a change too.
        fingerprint: JSON.stringify([archiveConfig, schedule, jobConfig.labels ?? null]),
      };
      const existing = this.byName.get(name);
      if (existing == null) {
        this.byName.set(name, newJob(name, join(config.global['base-dir'], name), fields));
        changes.added.push(name);
      } else {
        existing.removed = false;
        if (existing.fingerprint !== fields.fingerprint) {
          Object.assign(existing, fields);
          changes.changed.push(name);
        }
      }
    }
    for (const [name, job] of this.byName) {
      if (name in config.jobs) continue;
      changes.removed.push(name);
      // A running verify holds a worker too: the job stays until it ends (the scheduler drops it then).
      if (isBusy(job) || job.verify.state === 'running') job.removed = true;
      else this.byName.delete(name);
    }
    return changes;
  }

  /** Reads the jobs' revisions again where their directory changed; `reread` (after a run) skips the cache. */
  async refresh(jobs: readonly JobRuntime[], options: { reread?: boolean } = {}): Promise<void> {
    const queue = [...jobs];
    const worker = async () => {
      for (let job = queue.shift(); job != null; job = queue.shift()) {
        if (options.reread) this.archives.forget(job.dir);
        try {
          job.summary = await this.archives.summary(job.dir);
          job.slow = job.summary.newest != null && job.summary.newest.duration >= this.slowThresholdSeconds;
        } catch (error) {
          this.log.warn({ job: job.name, err: error }, 'cannot read the revisions of the job');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, queue.length) }, worker));
  }
}
