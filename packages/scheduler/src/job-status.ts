import type { StoreStats } from '@backy/core';
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import { outcomeStatusFields } from './job-outcome.js';
import { progressStatus } from './job-progress.js';
import { isBusy, JOB_STATES, type JobRuntime, type JobState } from './job-table.js';
import { slaState, sortTags } from './schedule-math.js';
import { type JobStatus, writeStatusFile } from './status-file.js';
import { verifyStatusFields } from './verify-job.js';

export interface SchedulerSummary {
  jobs: number;
  /** Jobs per state. */
  states: Record<JobState, number>;
  workerLimit: number;
  busyWorkers: number;
  idleWorkers: number;
  /**
   * The chunk stores of the jobs, each as its newest stats file among them says (recorded by purge,
   * which the daemon runs after each backup), sorted by store; a store no purge has recorded is missing.
   */
  stores: StoreStats[];
}

/** A job's line in the status file, `jobs` of the telnet shell and `backy status`, as seen at `now`. */
export function jobStatus(job: JobRuntime, now: number): JobStatus {
  const newest = job.summary.newest;
  const running = isBusy(job);
  const sla = slaState(job.schedule, newest?.time ?? null, running, now);
  const next = running || job.plan == null ? null : job.plan;
  return {
    job: job.name,
    sla: sla.ok ? 'OK' : 'TOO OLD',
    sla_overdue: sla.overdueSeconds,
    status: job.state,
    last_time: newest == null ? null : new Date(newest.time).toISOString(),
    last_tags: newest == null ? null : sortTags(job.schedule, newest.tags).join(','),
    last_duration: newest == null ? null : Math.round(newest.duration * 10) / 10,
    next_time: next == null ? null : new Date(Math.max(next.time, now)).toISOString(),
    next_tags: next == null || next.tags.length === 0 ? null : next.tags.join(','),
    manual_tags: job.summary.manualTags.join(', '),
    last_trust: newest?.trust ?? null,
    last_verification: newest?.verification ?? null,
    damaged_revisions: job.summary.damaged.join(', '),
    last_snapshot: newest?.snapshot ?? null,
    history_lost: job.summary.count === 0 && job.summary.historyStarted,
    revisions: job.summary.count,
    last_bytes_read: newest?.work.bytesRead ?? null,
    last_bytes_written: newest?.work.bytesWritten ?? null,
    last_chunks_written: newest?.work.chunksWritten ?? null,
    last_chunks_reused: newest?.work.chunksReused ?? null,
    ...outcomeStatusFields(job.outcome),
    ...verifyStatusFields(job, now),
    ...(job.progress != null ? { progress: progressStatus(job.progress, now) } : {}),
  };
}

/** The status of the jobs still in the config (optionally those whose name matches `filter`), by name. */
/** Which job names to list (a RegExp, or the telnet shell's linear-time RE2 pattern). */
export interface NameFilter {
  test(name: string): boolean;
}

export function listJobs(jobs: Iterable<JobRuntime>, now: number, filter?: NameFilter): JobStatus[] {
  const result: JobStatus[] = [];
  for (const job of jobs) {
    if (job.removed) continue;
    if (filter != null && !filter.test(job.name)) continue;
    result.push(jobStatus(job, now));
  }
  return result.sort((a, b) => (a.job < b.job ? -1 : a.job > b.job ? 1 : 0));
}

/** Jobs per state and the workers they keep busy; a removed job that still runs holds its worker. */
export function summarizeJobs(jobs: Iterable<JobRuntime>, workerLimit: number): SchedulerSummary {
  const states = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
  let count = 0;
  let busy = 0;
  const stores = new Map<string, StoreStats>();
  for (const job of jobs) {
    if (isBusy(job) || job.verify.state === 'running') busy++;
    if (job.removed) continue;
    count++;
    states[job.state]++;
    const stats = job.summary.storeStats;
    const known = stats == null ? undefined : stores.get(stats.store);
    if (stats != null && (known == null || Date.parse(stats.updated) > Date.parse(known.updated)))
      stores.set(stats.store, stats);
  }
  return {
    jobs: count,
    states,
    workerLimit,
    busyWorkers: busy,
    idleWorkers: Math.max(0, workerLimit - busy),
    stores: [...stores.values()].sort((a, b) => (a.store < b.store ? -1 : a.store > b.store ? 1 : 0)),
  };
}

export interface StatusFileWriterOptions {
  clock: Clock;
  log: Logger;
  /** The status file's path and the seconds between writes, read anew for each write (a reload may change them). */
  settings: () => { path: string; intervalSeconds: number };
  /** Brings the jobs up to date and returns their status. */
  collect: () => Promise<JobStatus[]>;
}

/** Writes the status file every `status-interval`, one write at a time, and logs the SLA violations. */
export class StatusFileWriter {
  private readonly options: StatusFileWriterOptions;
  private timer: unknown = null;
  private writing: Promise<void> | null = null;
  private stopped = false;

  constructor(options: StatusFileWriterOptions) {
    this.options = options;
  }

  /** Writes the file now (or joins the write under way) and then again every interval, until `stop()`. */
  start(): void {
    void this.write().finally(() => this.schedule());
  }

  /** Starts the interval anew, e.g. after a reload changed it. */
  schedule(): void {
    this.cancel();
    if (this.stopped) return;
    const { clock } = this.options;
    this.timer = clock.setTimeout(() => {
      this.timer = null;
      this.start();
    }, this.options.settings().intervalSeconds * 1000);
  }

  /** No more periodic writes; `write()` still works, for the last status file. */
  stop(): void {
    this.stopped = true;
    this.cancel();
  }

  /** Collects and writes the status; returns when it is written. Failures are logged only. */
  write(): Promise<void> {
    if (this.writing != null) return this.writing;
    const { log } = this.options;
    this.writing = (async () => {
      const { path } = this.options.settings();
      const started = Date.now();
      try {
        const jobs = await this.options.collect();
        await writeStatusFile(path, jobs);
        for (const j of jobs)
          if (j.sla !== 'OK') log.warn({ job: j.job, overdueSeconds: j.sla_overdue }, 'SLA violated');
        log.debug({ path, jobs: jobs.length, ms: Date.now() - started }, 'status file written');
      } catch (error) {
        log.error({ path, err: error }, 'cannot write the status file');
      } finally {
        this.writing = null;
      }
    })();
    return this.writing;
  }

  private cancel(): void {
    if (this.timer != null) this.options.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}
