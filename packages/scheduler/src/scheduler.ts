import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  acquireLock,
  archiveConfigSchema,
  BackyError,
  type CentralConfig,
  CONFIG_FILE,
  fromLegacyArchiveConfig,
  type JobConfig,
  type LoadedCentralConfig,
  type Lock,
  loadCentralConfig,
  readRevisions,
  type Schedule,
  writeFileAtomic,
} from '@backy/core';
import type { Logger } from 'pino';
import { parse, stringify } from 'yaml';
import { type ArchiveSummary, ArchiveWatcher, EMPTY_SUMMARY } from './archive-state.js';
import { type Clock, systemClock } from './clock.js';
import type { JobRunner, RunResult } from './runner.js';
import {
  backoffSeconds,
  type PlannedRun,
  pickNextJob,
  planNextRun,
  type QueueEntry,
  slaState,
  sortTags,
} from './schedule-math.js';
import { type JobStatus, writeStatusFile } from './status-file.js';

export type JobState = 'waiting' | 'queued' | 'running' | 'finishing' | 'failed';
export const JOB_STATES: readonly JobState[] = ['waiting', 'queued', 'running', 'finishing', 'failed'];

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
  validate?: (loaded: LoadedCentralConfig) => void | Promise<void>;
  /** A job whose last backup took at least this many seconds counts as slow (default 600). */
  slowThresholdSeconds?: number;
  /** Milliseconds `stop()` waits for running work after terminating it (default 30 s). */
  stopTimeoutMs?: number;
  /** Longest sleep of the planning loop, so clock jumps are noticed (default 60 s). */
  maxSleepMs?: number;
  /** The completion callback is terminated after this many milliseconds (default 5 minutes). */
  callbackTimeoutMs?: number;
}

export interface SchedulerSummary {
  jobs: number;
  /** Jobs per state. */
  states: Record<JobState, number>;
  workerLimit: number;
  busyWorkers: number;
  idleWorkers: number;
}

export type ReloadResult =
  | { ok: true; added: string[]; removed: string[]; changed: string[] }
  | { ok: false; error: string };
export type RunNowResult = 'started' | 'queued' | 'already running' | 'unknown job' | 'stopping';

interface JobRuntime {
  name: string;
  dir: string;
  config: JobConfig;
  schedule: Schedule;
  /** The archive config written before each run: the job's source and schedule as the user wrote them. */
  archiveConfig: { source: unknown; schedule: unknown; layout?: unknown; store?: unknown };
  fingerprint: string;
  state: JobState;
  summary: ArchiveSummary;
  /** Tag → start (ms) of runs this daemon made, in case expiry removed the tag from the archive. */
  ranAt: Record<string, number>;
  failures: number;
  lastFailure: number | null;
  lastResult: RunResult | null;
  plan: PlannedRun | null;
  /** Set by `run JOB`: start now with the next tags. */
  runNow: boolean;
  queuedAt: number;
  removed: boolean;
  slow: boolean;
  abort: AbortController | null;
}

/**
 * The backup daemon: keeps every job of the central config on its schedule, runs the work through a
 * JobRunner with at most `worker-limit` jobs at a time, and writes the status file. A library: it never
 * reads argv, prints or exits; the CLI wires signals, logging and the telnet shell to it.
 */
export class Scheduler {
  private readonly options: SchedulerOptions;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly runner: JobRunner;
  private readonly archives = new ArchiveWatcher();
  private loaded: LoadedCentralConfig;
  private readonly jobsByName = new Map<string, JobRuntime>();
  private lock: Lock | null = null;
  private wakeTimer: unknown = null;
  private wakeAt = Infinity;
  private statusTimer: unknown = null;
  private statusWriting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private readonly work = new Set<Promise<void>>();
  private readonly stopController = new AbortController();
  private resolveDone!: () => void;
  /** Resolves once the scheduler has stopped. */
  readonly done: Promise<void>;

  private constructor(options: SchedulerOptions, loaded: LoadedCentralConfig) {
    this.options = options;
    this.log = options.logger;
    this.clock = options.clock ?? systemClock;
    this.runner = options.runner;
    this.loaded = loaded;
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
  }

  /**
   * Loads the config, takes the exclusive lock on `<base-dir>/.lock` (BackyError LOCKED if another
   * daemon holds it), reads every job's revisions and starts scheduling.
   */
  static async start(options: SchedulerOptions): Promise<Scheduler> {
    const loaded = await loadAndValidate(options);
    const scheduler = new Scheduler(options, loaded);
    await scheduler.init();
    return scheduler;
  }

  private async init(): Promise<void> {
    const started = Date.now();
    const baseDir = this.baseDir;
    try {
      await mkdir(baseDir, { recursive: true });
    } catch (error) {
      throw new BackyError(
        'IO',
        `cannot create base-dir ${baseDir}: ${(error as NodeJS.ErrnoException).code ?? error}`,
        { cause: error },
      );
    }
    this.lock = await acquireLock(join(baseDir, '.lock'), 'exclusive', {
      busyMessage: `another scheduler is already running for ${baseDir} (${join(baseDir, '.lock')} is locked)`,
    });
    try {
      this.applyJobs(this.loaded.config);
      await this.refreshSummaries([...this.jobsByName.values()]);
      for (const job of this.jobsByName.values()) this.replan(job);
    } catch (error) {
      await this.lock.release();
      throw error;
    }
    this.log.info(
      {
        config: this.loaded.path,
        baseDir,
        jobs: this.jobsByName.size,
        workerLimit: this.workerLimit,
        ms: Date.now() - started,
      },
      'scheduler started',
    );
    if (this.options.signal != null) {
      if (this.options.signal.aborted) void this.stop();
      else this.options.signal.addEventListener('abort', () => void this.stop(), { once: true });
    }
    // The first status file is written in the background, like every later one.
    void this.writeStatus().finally(() => this.scheduleStatus());
    this.tick();
  }

  get baseDir(): string {
    return this.loaded.config.global['base-dir'];
  }

  get workerLimit(): number {
    return this.loaded.config.global['worker-limit'];
  }

  get config(): LoadedCentralConfig {
    return this.loaded;
  }

  get isStopping(): boolean {
    return this.stopping != null;
  }

  // ---------------------------------------------------------------- config

  private reloading: Promise<ReloadResult> = Promise.resolve({
    ok: true,
    added: [],
    removed: [],
    changed: [],
  });

  /** Reads the config again. An invalid config is rejected and the old one stays in force. */
  reload(): Promise<ReloadResult> {
    // SIGHUP and the shell's `reload` may overlap: one after the other.
    this.reloading = this.reloading.then(() =>
      this.reloadNow().catch((error: unknown) => {
        this.log.error({ err: error }, 'reload failed');
        return { ok: false as const, error: (error as Error).message };
      }),
    );
    return this.reloading;
  }

  private async reloadNow(): Promise<ReloadResult> {
    if (this.stopping != null) return { ok: false, error: 'the scheduler is stopping' };
    let loaded: LoadedCentralConfig;
    try {
      loaded = await loadAndValidate(this.options);
      if (loaded.config.global['base-dir'] !== this.baseDir) {
        throw new BackyError(
          'CONFIG_INVALID',
          `${loaded.path}: global.base-dir cannot change while the scheduler runs; restart it`,
        );
      }
    } catch (error) {
      const message = (error as Error).message;
      this.log.error(
        { config: this.options.configPath, error: message },
        'reload rejected: the old config stays in force',
      );
      return { ok: false, error: message };
    }
    const before = this.loaded.config.global;
    const after = loaded.config.global;
    if (
      before['telnet-port'] !== after['telnet-port'] ||
      before['telnet-addrs'].join() !== after['telnet-addrs'].join()
    ) {
      this.log.warn('telnet-addrs and telnet-port changes take effect when the scheduler restarts');
    }
    this.loaded = loaded;
    const changes = this.applyJobs(loaded.config);
    const fresh = changes.added.map((name) => this.jobsByName.get(name)!);
    await this.refreshSummaries(fresh);
    for (const job of this.jobsByName.values())
      if (job.state === 'waiting' || job.state === 'failed') this.replan(job);
    this.log.info(
      { ...changes, jobs: this.jobsByName.size, workerLimit: this.workerLimit },
      'config reloaded',
    );
    if (before['status-interval'] !== after['status-interval']) this.scheduleStatus();
    this.tick();
    return { ok: true, ...changes };
  }

  /** Adds, updates and removes jobs; running backups are left alone and pick up changes next time. */
  private applyJobs(config: CentralConfig): { added: string[]; removed: string[]; changed: string[] } {
    const added: string[] = [];
    const changed: string[] = [];
    const removed: string[] = [];
    const rawJobs = (this.loaded.raw.jobs ?? {}) as Record<string, Record<string, unknown>>;
    const rawSchedules = (this.loaded.raw.schedules ?? {}) as Record<string, unknown>;
    for (const [name, jobConfig] of Object.entries(config.jobs)) {
      const rawGlobal = (this.loaded.raw.global ?? {}) as Record<string, unknown>;
      const layout = rawJobs[name]?.layout ?? rawGlobal.layout;
      const store = rawJobs[name]?.store ?? rawGlobal.store;
      const archiveConfig = {
        source: rawJobs[name]?.source ?? jobConfig.source,
        schedule: rawSchedules[jobConfig.schedule],
        ...(layout == null ? {} : { layout }),
        ...(store == null ? {} : { store }),
      };
      const schedule = config.schedules[jobConfig.schedule]!;
      const fingerprint = JSON.stringify([archiveConfig, schedule]);
      const existing = this.jobsByName.get(name);
      if (existing == null) {
        this.jobsByName.set(name, {
          name,
          dir: join(this.baseDir, name),
          config: jobConfig,
          schedule,
          archiveConfig,
          fingerprint,
          state: 'waiting',
          summary: EMPTY_SUMMARY,
          ranAt: {},
          failures: 0,
          lastFailure: null,
          lastResult: null,
          plan: null,
          runNow: false,
          queuedAt: 0,
          removed: false,
          slow: false,
          abort: null,
        });
        added.push(name);
      } else {
        if (existing.removed) existing.removed = false;
        if (existing.fingerprint !== fingerprint) {
          Object.assign(existing, { config: jobConfig, schedule, archiveConfig, fingerprint });
          changed.push(name);
        }
      }
    }
    for (const [name, job] of this.jobsByName) {
      if (name in config.jobs) continue;
      removed.push(name);
      if (job.state === 'running' || job.state === 'finishing') {
        job.removed = true;
      } else {
        this.jobsByName.delete(name);
      }
    }
    return { added, removed, changed };
  }

  private async refreshSummaries(jobs: JobRuntime[]): Promise<void> {
    const queue = [...jobs];
    const worker = async () => {
      for (let job = queue.shift(); job != null; job = queue.shift()) {
        try {
          job.summary = await this.archives.summary(job.dir);
          job.slow =
            job.summary.newest != null &&
            job.summary.newest.duration >= (this.options.slowThresholdSeconds ?? 600);
        } catch (error) {
          this.log.warn({ job: job.name, err: error }, 'cannot read the revisions of the job');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, queue.length) }, worker));
  }

  // ---------------------------------------------------------------- planning

  private lastRuns(job: JobRuntime): Record<string, number> {
    const runs = { ...job.summary.lastRuns };
    for (const [tag, at] of Object.entries(job.ranAt)) if (!(tag in runs) || runs[tag]! < at) runs[tag] = at;
    return runs;
  }

  private replan(job: JobRuntime): void {
    job.plan = planNextRun(
      job.name,
      job.schedule,
      { lastRuns: this.lastRuns(job), failures: job.failures, lastFailure: job.lastFailure },
      this.clock.now(),
    );
  }

  /** Queues due jobs, starts what the workers allow and sleeps until the next due time. */
  private tick(): void {
    if (this.stopping != null) return;
    const now = this.clock.now();
    let next = Infinity;
    for (const job of this.jobsByName.values()) {
      if (job.state !== 'waiting' && job.state !== 'failed') continue;
      if (job.runNow || (job.plan != null && job.plan.time <= now)) {
        job.state = 'queued';
        job.queuedAt = job.runNow ? now : Math.min(now, job.plan?.time ?? now);
      } else if (job.plan != null) {
        next = Math.min(next, job.plan.time);
      }
    }
    this.dispatch();
    this.sleepUntil(next);
  }

  private dispatch(): void {
    for (;;) {
      const queue: QueueEntry[] = [];
      let total = 0;
      let slow = 0;
      for (const job of this.jobsByName.values()) {
        if (job.state === 'queued') queue.push({ name: job.name, due: job.queuedAt, slow: job.slow });
        else if (job.state === 'running' || job.state === 'finishing') {
          total++;
          if (job.slow) slow++;
        }
      }
      const pick = pickNextJob(queue, { total, slow }, this.workerLimit);
      if (pick == null) return;
      const job = this.jobsByName.get(pick.name)!;
      const promise = this.execute(job).catch((error) => {
        this.log.error({ job: job.name, err: error }, 'unexpected error while running the job');
        job.state = 'failed';
      });
      this.work.add(promise);
      void promise.finally(() => {
        this.work.delete(promise);
        this.tick();
      });
    }
  }

  private sleepUntil(at: number): void {
    const target = Math.min(at, this.clock.now() + (this.options.maxSleepMs ?? 60_000));
    if (this.wakeTimer != null) {
      if (target >= this.wakeAt) return;
      this.clock.clearTimeout(this.wakeTimer);
    }
    this.wakeAt = target;
    this.wakeTimer = this.clock.setTimeout(
      () => {
        this.wakeTimer = null;
        this.wakeAt = Infinity;
        this.tick();
      },
      Math.max(0, target - this.clock.now()),
    );
  }

  // ---------------------------------------------------------------- running

  private async execute(job: JobRuntime): Promise<void> {
    const log = this.log.child({ job: job.name });
    const started = this.clock.now();
    const tags =
      job.runNow && job.plan != null
        ? job.plan.tags
        : (planNextRun(
            job.name,
            job.schedule,
            { lastRuns: this.lastRuns(job), failures: 0, lastFailure: null },
            started,
          )?.tags ?? []);
    job.runNow = false;
    job.state = 'running';
    job.abort = new AbortController();
    const signal = AbortSignal.any([job.abort.signal, this.stopController.signal]);
    let result: RunResult;
    try {
      await this.writeArchiveConfig(job);
      signal.throwIfAborted();
      log.info({ tags }, 'backup started');
      result = await this.runner.backup({ job: job.name, dir: job.dir, tags, signal });
    } catch (error) {
      result = {
        ok: false,
        exitCode: null,
        signal: null,
        stderr: (error as Error).message,
        durationMs: this.clock.now() - started,
      };
    }
    job.lastResult = result;
    if (this.stopController.signal.aborted) {
      log.warn(
        { exitCode: result.exitCode, signal: result.signal },
        'backup terminated because the scheduler is stopping',
      );
      job.state = 'waiting';
      job.abort = null;
      return;
    }
    if (result.ok) {
      job.failures = 0;
      job.lastFailure = null;
      for (const tag of tags) job.ranAt[tag] = started;
      log.info({ tags, seconds: Math.round(result.durationMs / 100) / 10 }, 'backup completed');
      job.state = 'finishing';
      await this.finish(job, signal, log);
    } else {
      job.failures++;
      job.lastFailure = this.clock.now();
      const retryIn = backoffSeconds(job.failures);
      log.error(
        {
          tags,
          exitCode: result.exitCode,
          signal: result.signal,
          stderr: result.stderr,
          failures: job.failures,
          retryInSeconds: retryIn,
        },
        `backup failed with ${result.exitCode != null ? `exit status ${result.exitCode}` : result.signal != null ? `signal ${result.signal}` : 'an error'}; retrying in ${retryIn} s`,
      );
    }
    job.abort = null;
    this.archives.forget(job.dir);
    await this.refreshSummaries([job]);
    if (job.removed) {
      this.jobsByName.delete(job.name);
      log.info('job removed from the config; it is no longer scheduled');
      return;
    }
    job.state = job.failures > 0 ? 'failed' : 'waiting';
    this.replan(job);
  }

  /** After a successful backup: expire, purge, then the completion callback. Failures are logged only. */
  private async finish(job: JobRuntime, signal: AbortSignal, log: Logger): Promise<void> {
    const report = (what: string, result: RunResult) => {
      if (!result.ok && !signal.aborted) {
        log.warn(
          { exitCode: result.exitCode, signal: result.signal, stderr: result.stderr },
          `${what} failed`,
        );
      }
    };
    report('expire', await this.runner.expire({ job: job.name, dir: job.dir, signal }));
    if (signal.aborted) return;
    report('purge', await this.runner.purge({ job: job.name, dir: job.dir, signal }));
    const program = this.loaded.config.global['backup-completed-callback'];
    if (program == null || signal.aborted) return;
    let input: string;
    try {
      input = stringify(await readRevisions(job.dir));
    } catch (error) {
      log.warn({ err: error }, 'cannot read the revisions for the completion callback');
      return;
    }
    const limit = AbortSignal.timeout(this.options.callbackTimeoutMs ?? 5 * 60_000);
    const result = await this.runner.callback({
      job: job.name,
      dir: job.dir,
      signal: AbortSignal.any([signal, limit]),
      program,
      input,
    });
    if (limit.aborted) log.warn({ program }, 'backup-completed-callback took too long and was terminated');
    report('backup-completed-callback', result);
    if (result.ok) log.info({ program }, 'completion callback done');
  }

  /**
   * Writes the job's effective archive config, so that `backy` run by hand in the job's directory does
   * what the daemon does. Keys the central config does not set (store, layout) are kept.
   */
  private async writeArchiveConfig(job: JobRuntime): Promise<void> {
    await mkdir(job.dir, { recursive: true });
    const path = join(job.dir, CONFIG_FILE);
    let existing: Record<string, unknown> = {};
    try {
      const parsed = parse(await readFile(path, 'utf8'));
      // backy 2.x wrote the bare source mapping: read as {source: …}, so its keys are not taken as ours.
      const current = fromLegacyArchiveConfig(parsed);
      if (current != null && typeof current === 'object' && !Array.isArray(current))
        existing = current as Record<string, unknown>;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.log.warn({ job: job.name, path }, 'existing archive config is unreadable; replacing it');
      }
    }
    // The central config's layout and store (per job or global) win; without them the archive's own stay.
    const config = { ...existing, ...job.archiveConfig };
    const check = archiveConfigSchema.safeParse(config);
    if (!check.success) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${path}: the merged archive config is invalid: ${check.error.issues[0]?.message}`,
      );
    }
    const text = stringify(config);
    if (Object.keys(existing).length > 0 && stringify(existing) === text) return;
    await writeFileAtomic(path, text);
  }

  // ---------------------------------------------------------------- commands

  /** Starts a job now with the tags of its next run. */
  runJob(name: string): RunNowResult {
    if (this.stopping != null) return 'stopping';
    const job = this.jobsByName.get(name);
    if (job == null || job.removed) return 'unknown job';
    if (job.state === 'running' || job.state === 'finishing') return 'already running';
    if (job.state === 'queued') return 'queued';
    job.runNow = true;
    this.tick();
    return (job.state as JobState) === 'running' ? 'started' : 'queued';
  }

  /** Starts every job that is not running or queued already; returns how many were started or queued. */
  runAll(): number {
    let count = 0;
    for (const job of this.jobsByName.values()) {
      if (job.removed || job.state === 'running' || job.state === 'finishing' || job.state === 'queued')
        continue;
      job.runNow = true;
      count++;
    }
    this.tick();
    return count;
  }

  /** Status of the jobs (optionally those whose name matches `filter`), sorted by name. From memory: cheap. */
  jobs(filter?: RegExp): JobStatus[] {
    const now = this.clock.now();
    const result: JobStatus[] = [];
    for (const job of this.jobsByName.values()) {
      if (job.removed) continue;
      if (filter != null && !filter.test(job.name)) continue;
      result.push(this.statusOf(job, now));
    }
    return result.sort((a, b) => (a.job < b.job ? -1 : a.job > b.job ? 1 : 0));
  }

  private statusOf(job: JobRuntime, now: number): JobStatus {
    const newest = job.summary.newest;
    const running = job.state === 'running' || job.state === 'finishing';
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
    };
  }

  summary(): SchedulerSummary {
    const states = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
    let jobs = 0;
    for (const job of this.jobsByName.values()) {
      if (job.removed) continue;
      jobs++;
      states[job.state]++;
    }
    let busy = 0;
    for (const job of this.jobsByName.values())
      if (job.state === 'running' || job.state === 'finishing') busy++;
    return {
      jobs,
      states,
      workerLimit: this.workerLimit,
      busyWorkers: busy,
      idleWorkers: Math.max(0, this.workerLimit - busy),
    };
  }

  // ---------------------------------------------------------------- status file

  private scheduleStatus(): void {
    if (this.statusTimer != null) this.clock.clearTimeout(this.statusTimer);
    this.statusTimer = null;
    if (this.stopping != null) return;
    this.statusTimer = this.clock.setTimeout(() => {
      this.statusTimer = null;
      void this.writeStatus().finally(() => this.scheduleStatus());
    }, this.loaded.config.global['status-interval'] * 1000);
  }

  /** Re-reads changed archives and writes the status file; returns when it is written. */
  async writeStatus(): Promise<void> {
    if (this.statusWriting != null) return this.statusWriting;
    this.statusWriting = (async () => {
      const started = Date.now();
      try {
        await this.refreshSummaries(
          [...this.jobsByName.values()].filter((j) => j.state !== 'running' && j.state !== 'finishing'),
        );
        for (const job of this.jobsByName.values()) if (job.state === 'waiting') this.replan(job);
        const jobs = this.jobs();
        await writeStatusFile(this.loaded.statusFile, jobs);
        const late = jobs.filter((j) => j.sla !== 'OK');
        for (const j of late) this.log.warn({ job: j.job, overdueSeconds: j.sla_overdue }, 'SLA violated');
        this.log.debug(
          { path: this.loaded.statusFile, jobs: jobs.length, ms: Date.now() - started },
          'status file written',
        );
      } catch (error) {
        this.log.error({ path: this.loaded.statusFile, err: error }, 'cannot write the status file');
      } finally {
        this.statusWriting = null;
      }
    })();
    return this.statusWriting;
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Stops starting new work, terminates running work gracefully (SIGTERM to the children, which leave
   * no partial revision), writes a last status file and releases the lock.
   */
  stop(): Promise<void> {
    if (this.stopping != null) return this.stopping;
    this.stopping = (async () => {
      const running = [...this.jobsByName.values()]
        .filter((j) => j.state === 'running' || j.state === 'finishing')
        .map((j) => j.name);
      this.log.info({ running }, 'scheduler stopping');
      if (this.wakeTimer != null) this.clock.clearTimeout(this.wakeTimer);
      if (this.statusTimer != null) this.clock.clearTimeout(this.statusTimer);
      this.wakeTimer = null;
      this.statusTimer = null;
      for (const job of this.jobsByName.values()) if (job.state === 'queued') job.state = 'waiting';
      this.stopController.abort();
      const timeout = this.options.stopTimeoutMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      const all = Promise.allSettled([...this.work]);
      const finished = await Promise.race([
        all.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), timeout);
        }),
      ]);
      clearTimeout(timer);
      if (!finished)
        this.log.error({ timeoutMs: timeout }, 'running work did not stop in time; leaving it behind');
      await this.writeStatus();
      await this.lock?.release();
      this.log.info('scheduler stopped');
      this.resolveDone();
    })();
    return this.stopping;
  }
}

async function loadAndValidate(options: SchedulerOptions): Promise<LoadedCentralConfig> {
  const loaded = await loadCentralConfig(options.configPath);
  await options.validate?.(loaded);
  return loaded;
}
