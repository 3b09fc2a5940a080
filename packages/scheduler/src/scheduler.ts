import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  acquireLock,
  BackyError,
  copyTargetOf,
  type LoadedCentralConfig,
  type Lock,
  verifyJobOf,
} from '@backy/core';
import { Notifier } from '@backy/notify';
import type { Logger } from 'pino';
import { type Clock, systemClock, timeoutSignal } from './clock.js';
import { claimFleetJob, withFleetFields } from './fleet-gate.js';
import { JobNotices, outcomeNotice } from './job-notices.js';
import { outcomeFromStatus, type RunRecord } from './job-outcome.js';
import { nextJobToStart, planJob, queueDueJobs } from './job-plan.js';
import { runJobOnce } from './job-run.js';
import {
  listJobs,
  type NameFilter,
  type SchedulerSummary,
  StatusFileWriter,
  summarizeJobs,
} from './job-status.js';
import { isBusy, type JobRuntime, JobTable, loadJobConfig, loadReloadedConfig } from './job-table.js';
import type { ReloadResult, RunNowResult, SchedulerOptions, VerifyNowResult } from './scheduler-options.js';
import { type JobStatus, readStatusFile } from './status-file.js';
import { isVerifying, nextVerifyToStart, queueDueVerifies } from './verify-job.js';
import { runVerifyOnce } from './verify-run.js';

export type { ReloadResult, RunNowResult, SchedulerOptions, VerifyNowResult };

/**
 * The backup daemon: keeps every job of the central config on its schedule, runs the work through a
 * JobRunner with at most `worker-limit` jobs at a time, and writes the status file. A library: it never
 * reads argv, prints or exits; the CLI wires signals, logging and the telnet shell to it.
 */
export class Scheduler {
  private readonly options: SchedulerOptions;
  private readonly log: Logger;
  private readonly clock: Clock;
  private loaded: LoadedCentralConfig;
  private readonly jobTable: JobTable;
  private readonly statusFile: StatusFileWriter;
  private readonly notices: JobNotices;
  private lock: Lock | null = null;
  private wakeTimer: unknown = null;
  private wakeAt = Infinity;
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
    this.loaded = loaded;
    this.jobTable = new JobTable({
      log: this.log,
      slowThresholdSeconds: options.slowThresholdSeconds ?? 600,
    });
    this.statusFile = new StatusFileWriter({
      clock: this.clock,
      log: this.log,
      settings: () => ({
        path: this.loaded.statusFile,
        intervalSeconds: this.loaded.config.global['status-interval'],
      }),
      collect: () => this.collectStatus(),
    });
    this.notices = new JobNotices(
      options.notifier ?? ((targets, log) => new Notifier(targets, { log })),
      this.log,
    );
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
  }

  /**
   * Loads the config, takes the exclusive lock on `<base-dir>/.lock` (BackyError LOCKED if another
   * daemon holds it), reads every job's revisions and starts scheduling.
   */
  static async start(options: SchedulerOptions): Promise<Scheduler> {
    const loaded = await loadJobConfig(options.configPath, options.validate);
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
    // Fleet servers may share base-dir (a shared directory store): each locks its own name there.
    const lockName = this.options.fleet == null ? '.lock' : `.lock-${this.options.fleet.server}`;
    this.lock = await acquireLock(join(baseDir, lockName), 'exclusive', {
      busyMessage: `another scheduler is already running for ${baseDir} (${join(baseDir, lockName)} is locked)`,
    });
    try {
      this.jobTable.apply(this.loaded);
      await this.restoreOutcomes();
      await this.jobTable.refresh([...this.jobTable.values()]);
      for (const job of this.jobTable.values()) this.replan(job);
    } catch (error) {
      await this.lock.release();
      throw error;
    }
    this.log.info(
      {
        config: this.loaded.path,
        baseDir,
        jobs: this.jobTable.size,
        workerLimit: this.workerLimit,
        ms: Date.now() - started,
      },
      'scheduler started',
    );
    this.notices.configure(this.loaded.config.notifications);
    this.notices.send({ event: 'daemon-started' });
    if (this.options.signal != null) {
      if (this.options.signal.aborted) void this.stop();
      else this.options.signal.addEventListener('abort', () => void this.stop(), { once: true });
    }
    // The first status file is written in the background, like every later one.
    this.statusFile.start();
    this.options.fleet?.onChange(() => this.tick());
    this.tick();
  }

  /**
   * Takes the jobs' outcome records from the last status file, so a restart does not turn a failing
   * job into one that merely has not run yet. A file that cannot be read is no reason not to start.
   */
  private async restoreOutcomes(): Promise<void> {
    let previous: Awaited<ReturnType<typeof readStatusFile>>;
    try {
      previous = await readStatusFile(this.loaded.statusFile);
    } catch (error) {
      this.log.warn(
        { path: this.loaded.statusFile, error: (error as Error).message },
        'cannot read the previous status file; the outcomes of earlier runs are not known',
      );
      return;
    }
    for (const entry of previous?.jobs ?? []) {
      const job = this.jobTable.get(entry.job);
      if (job != null) job.outcome = outcomeFromStatus(entry);
    }
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
      loaded = await loadReloadedConfig(
        this.options.configPath,
        this.options.validate,
        this.loaded,
        this.log,
      );
    } catch (error) {
      const message = (error as Error).message;
      this.log.error(
        { config: this.options.configPath, error: message },
        'reload rejected: the old config stays in force',
      );
      return { ok: false, error: message };
    }
    const statusIntervalChanged =
      this.loaded.config.global['status-interval'] !== loaded.config.global['status-interval'];
    this.loaded = loaded;
    this.notices.configure(loaded.config.notifications);
    const changes = this.jobTable.apply(loaded);
    await this.jobTable.refresh(changes.added.map((name) => this.jobTable.get(name)!));
    for (const job of this.jobTable.values())
      if (job.state === 'waiting' || job.state === 'failed') this.replan(job);
    this.log.info({ ...changes, jobs: this.jobTable.size, workerLimit: this.workerLimit }, 'config reloaded');
    if (statusIntervalChanged) this.statusFile.schedule();
    this.tick();
    return { ok: true, ...changes };
  }

  // ---------------------------------------------------------------- planning and running

  private replan(job: JobRuntime): void {
    job.plan = planJob(job, this.clock.now());
  }

  /** Queues due jobs, starts what the workers allow and sleeps until the next due time. */
  private tick(): void {
    if (this.stopping != null) return;
    const now = this.clock.now();
    const fleet = this.options.fleet;
    let next = queueDueJobs(
      this.jobTable.values(),
      now,
      fleet && ((j) => fleet.owns(j.name, j.config.labels)),
    );
    if (this.options.runner.verify != null)
      next = Math.min(
        next,
        queueDueVerifies(this.jobTable.values(), now, (job) => verifyJobOf(this.loaded.config, job.name)),
      );
    this.dispatch();
    this.sleepUntil(next);
  }

  private dispatch(): void {
    for (;;) {
      const name = nextJobToStart(this.jobTable.values(), this.workerLimit);
      // Backups first; a free worker left over may verify an archive (verify-job.ts).
      const verify = name == null ? nextVerifyToStart(this.jobTable.values(), this.workerLimit) : null;
      if (name == null && verify == null) return;
      const job = verify ?? this.jobTable.get(name!)!;
      const run = verify != null ? this.executeVerify(job) : this.execute(job);
      const promise = run.catch((error) => {
        this.log.error({ job: job.name, err: error }, 'unexpected error while running the job');
        if (verify != null) job.verify.state = 'idle';
        else job.state = 'failed';
      });
      this.work.add(promise);
      void promise.finally(() => {
        this.work.delete(promise);
        this.tick();
        this.options.onWorkDone?.();
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

  private async execute(job: JobRuntime): Promise<void> {
    const log = this.log.child({ job: job.name });
    const before = job.outcome;
    const fleet = this.options.fleet;
    const claim =
      fleet == null
        ? null
        : await claimFleetJob(fleet, job, {
            now: () => this.clock.now(),
            reread: () => this.jobTable.refresh([job], { reread: true }),
            log,
          });
    if (fleet != null && claim == null) return;
    const outcome = await runJobOnce(job, {
      fleet: claim,
      runner: this.options.runner,
      clock: this.clock,
      log,
      stopSignal: this.stopController.signal,
      callbackProgram: () => this.loaded.config.global['backup-completed-callback'],
      copyTarget: () => copyTargetOf(this.loaded.config, job.name),
      callbackTimeoutMs: this.options.callbackTimeoutMs ?? 5 * 60_000,
    }).finally(() => claim?.release());
    if (outcome === 'stopped') return;
    this.notices.send(
      outcomeNotice(job.name, before, job.outcome, this.loaded.config.global['critical-failures']),
    );
    await this.jobTable.refresh([job], { reread: true });
    if (job.removed) {
      this.jobTable.delete(job.name);
      log.info('job removed from the config; it is no longer scheduled');
      return;
    }
    job.state = job.failures > 0 ? 'failed' : 'waiting';
    this.replan(job);
  }

  /** One scheduled verify of the job's archive; its worker is free again when it returns. */
  private async executeVerify(job: JobRuntime): Promise<void> {
    const settings = job.verify.settings;
    const revision = job.verify.revision;
    job.verify.revision = null;
    if (settings == null && revision == null) {
      job.verify.state = 'idle';
      return;
    }
    // One revision on request: read whenever it was verified last (the runner ignores outdatedAfter).
    const request =
      revision != null ? { outdatedAfter: 0, revision } : { outdatedAfter: settings!.outdatedAfter };
    const damaged = await runVerifyOnce(job, request, {
      runner: this.options.runner,
      clock: this.clock,
      log: this.log.child({ job: job.name }),
      stopSignal: this.stopController.signal,
      reread: () => this.jobTable.refresh([job], { reread: true }),
    });
    if (damaged.length > 0)
      this.notices.send({
        event: 'verify-damage',
        job: job.name,
        reason: `revision${damaged.length > 1 ? 's' : ''} ${damaged.join(', ')} no longer match${damaged.length > 1 ? '' : 'es'} ${damaged.length > 1 ? 'their' : 'its'} checksums: distrusted`,
      });
    if (job.removed && !isBusy(job)) {
      this.jobTable.delete(job.name);
      this.log.info({ job: job.name }, 'job removed from the config; it is no longer scheduled');
    }
  }

  // ---------------------------------------------------------------- commands

  /** Starts a job now with the tags of its next run. */
  runJob(name: string): RunNowResult {
    if (this.stopping != null) return 'stopping';
    const job = this.jobTable.get(name);
    if (job == null || job.removed) return 'unknown job';
    if (isBusy(job)) return 'already running';
    if (job.state === 'queued') return 'queued';
    job.runNow = true;
    this.tick();
    return isBusy(job) ? 'started' : 'queued';
  }

  /**
   * Verifies revision `uuid` of the job's archive now, as its verify job does (a worker of the limit,
   * never during its backup; the outcome in its `verify_*` status fields and notifications).
   */
  verifyNow(name: string, uuid: string): VerifyNowResult {
    if (this.stopping != null) return 'stopping';
    if (this.options.runner.verify == null) return 'not available';
    const job = this.jobTable.get(name);
    if (job == null || job.removed) return 'unknown job';
    const v = job.verify;
    // Running, queued, or a requested one waiting for its archive to be free.
    if (v.state !== 'idle' || v.revision != null) return 'already running';
    v.state = 'queued';
    v.queuedAt = this.clock.now();
    v.revision = uuid;
    this.tick();
    return isVerifying(job) ? 'started' : 'queued';
  }

  /** The job's recent runs, newest first (in memory, since the daemon started), or null: no such job. */
  runs(name: string): RunRecord[] | null {
    const job = this.jobTable.get(name);
    return job == null || job.removed ? null : job.runs;
  }

  /** Each job's archive directory, sorted by job name. */
  archives(): { job: string; dir: string }[] {
    return [...this.jobTable.values()]
      .filter((j) => !j.removed)
      .map((j) => ({ job: j.name, dir: j.dir }))
      .sort((a, b) => (a.job < b.job ? -1 : a.job > b.job ? 1 : 0));
  }

  /** Starts every job that is not running or queued already; returns how many were started or queued. */
  runAll(): number {
    let count = 0;
    for (const job of this.jobTable.values()) {
      if (job.removed || isBusy(job) || job.state === 'queued') continue;
      job.runNow = true;
      count++;
    }
    this.tick();
    return count;
  }

  /** Status of the jobs (optionally those whose name matches `filter`), sorted by name. From memory: cheap. */
  jobs(filter?: NameFilter): JobStatus[] {
    const rows = listJobs(this.jobTable.values(), this.clock.now(), filter);
    const fleet = this.options.fleet;
    return fleet == null
      ? rows
      : withFleetFields(rows, fleet, (job) => this.jobTable.get(job)?.config.labels);
  }

  summary(): SchedulerSummary {
    return summarizeJobs(this.jobTable.values(), this.workerLimit);
  }

  /** Re-reads changed archives and writes the status file; returns when it is written. */
  writeStatus(): Promise<void> {
    return this.statusFile.write();
  }

  /** Before each status file: the idle jobs' archives read again (an operator may have run backy), plans renewed. */
  private async collectStatus(): Promise<JobStatus[]> {
    await this.jobTable.refresh([...this.jobTable.values()].filter((j) => !isBusy(j)));
    for (const job of this.jobTable.values()) if (job.state === 'waiting') this.replan(job);
    const jobs = this.jobs();
    this.notices.watchSla(jobs);
    return jobs;
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Stops starting new work, terminates running work gracefully (SIGTERM to the children, which leave
   * no partial revision), writes a last status file and releases the lock.
   */
  stop(): Promise<void> {
    if (this.stopping != null) return this.stopping;
    this.stopping = (async () => {
      const running = [...this.jobTable.values()].filter(isBusy).map((j) => j.name);
      this.log.info({ running }, 'scheduler stopping');
      if (this.wakeTimer != null) this.clock.clearTimeout(this.wakeTimer);
      this.wakeTimer = null;
      this.statusFile.stop();
      for (const job of this.jobTable.values()) {
        if (job.state === 'queued') job.state = 'waiting';
        if (job.verify.state === 'queued') {
          job.verify.state = 'idle';
          job.verify.revision = null;
        }
      }
      this.stopController.abort();
      const timeout = this.options.stopTimeoutMs ?? 30_000;
      const limit = timeoutSignal(this.clock, timeout);
      const finished = await Promise.race([
        Promise.allSettled([...this.work]).then(() => true),
        new Promise<boolean>((resolve) => limit.signal.addEventListener('abort', () => resolve(false))),
      ]);
      limit.cancel();
      if (!finished)
        this.log.error({ timeoutMs: timeout }, 'running work did not stop in time; leaving it behind');
      await this.writeStatus();
      await this.lock?.release();
      this.notices.send({ event: 'daemon-stopped' });
      await this.notices.close(this.options.notifyTimeoutMs ?? 10_000);
      this.log.info('scheduler stopped');
      this.resolveDone();
    })();
    return this.stopping;
  }
}
