import type { StoreStats } from '@backy/core';
import type { JobStatus, SchedulerSummary } from '@backy/scheduler';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/** What the metrics are read from, at each scrape. */
export interface MetricsSource {
  jobs(): JobStatus[];
  summary(): SchedulerSummary;
  version: string;
}

/** `read`, its result reused for 100 ms: long enough for one scrape's gauges, short enough to be current. */
function briefly<T>(read: () => T): () => T {
  let at = Number.NEGATIVE_INFINITY;
  let value: T;
  return () => {
    const now = performance.now();
    if (now - at > 100) {
      value = read();
      at = now;
    }
    return value;
  };
}

const seconds = (iso: string | null | undefined) => (iso == null ? null : Date.parse(iso) / 1000);

export interface MetricsOptions {
  /**
   * prom-client's `process_*` and `nodejs_*` metrics (default true). Off for the node_exporter textfile:
   * node_exporter has its own `process_*`, and a name from two collectors fails its scrape.
   */
  processMetrics?: boolean;
}

/**
 * The daemon's Prometheus metrics (docs/api.md lists them), read from the scheduler at each scrape:
 * nothing is kept between scrapes, so a removed job's series disappear with it. Nothing here reads a
 * disk: the revisions' stats and the stores' stats files are read by the scheduler when they change.
 */
export function createMetrics(given: MetricsSource, options: MetricsOptions = {}): Registry {
  // Every gauge reads the jobs at a scrape: one listing serves them all (a thousand jobs, twenty gauges).
  const source: MetricsSource = {
    jobs: briefly(() => given.jobs()),
    summary: briefly(() => given.summary()),
    version: given.version,
  };
  const registry = new Registry();
  // The event-loop delay histogram samples every 10 ms by default: 100 wake-ups a second in an idle
  // daemon. A backup daemon's loop needs no finer view than 100 ms.
  if (options.processMetrics ?? true)
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  jobMetrics(registry, source);
  storeMetrics(registry, source);
  daemonMetrics(registry, source);
  return registry;
}

/** Per job, from its status entry (and its newest revision's stats). */
function jobMetrics(registry: Registry, source: MetricsSource): void {
  const perJob = (
    name: string,
    help: string,
    value: (job: JobStatus) => number | null | undefined,
  ): Gauge<'job'> =>
    new Gauge({
      name,
      help,
      labelNames: ['job'],
      registers: [registry],
      collect() {
        this.reset();
        for (const job of source.jobs()) {
          const v = value(job);
          if (v != null && Number.isFinite(v)) this.set({ job: job.job }, v);
        }
      },
    });
  perJob(
    'backy_job_last_success_timestamp_seconds',
    'When the job last made a trusted revision (Unix time)',
    (j) => seconds(j.last_success) ?? seconds(j.last_time),
  );
  perJob('backy_job_last_run_timestamp_seconds', 'When the last run of the job ended (Unix time)', (j) =>
    seconds(j.last_run),
  );
  perJob(
    'backy_job_last_backup_duration_seconds',
    'How long the newest revision took to make',
    (j) => j.last_duration,
  );
  perJob(
    'backy_job_consecutive_failures',
    'Failed runs of the job in a row',
    (j) => j.consecutive_failures ?? 0,
  );
  perJob(
    'backy_job_sla_overdue_seconds',
    'How far the newest revision is beyond the SLA (0: within)',
    (j) => j.sla_overdue,
  );
  perJob('backy_job_running', '1 while a backup of the job runs', (j) =>
    j.status === 'running' || j.status === 'finishing' ? 1 : 0,
  );
  perJob('backy_job_verify_running', "1 while the job's verify job runs", (j) =>
    j.verify_status === 'running' ? 1 : 0,
  );
  // A running backup's or verify's progress; no sample for a job that is not running.
  perJob(
    'backy_job_progress_done_bytes',
    'Bytes a running backup or verify has done in its current phase',
    (j) => j.progress?.done,
  );
  perJob(
    'backy_job_progress_total_bytes',
    'Bytes of the running backup or verify in all (0: not known)',
    (j) => j.progress?.total,
  );
  perJob(
    'backy_job_progress_rate_bytes_per_second',
    'Bytes a second the running backup or verify does in its current phase',
    (j) => j.progress?.rate,
  );
  perJob(
    'backy_job_progress_eta_seconds',
    'Seconds the running backup or verify needs at its current rate',
    (j) => j.progress?.eta_seconds,
  );
  perJob('backy_job_revisions', 'Complete revisions of the job', (j) => j.revisions);
  // The newest revision's own record of its backup (its stats): no sample when it has none.
  perJob(
    'backy_job_last_backup_read_bytes',
    "Bytes the newest revision's backup read from the source",
    (j) => j.last_bytes_read,
  );
  perJob(
    'backy_job_last_backup_written_bytes',
    "Bytes the newest revision's backup wrote to the store (new chunks, as stored)",
    (j) => j.last_bytes_written,
  );
  new Gauge({
    name: 'backy_job_last_backup_chunks',
    help: "Chunks of the newest revision's backup: written anew (kind new) or found in the store (reused)",
    labelNames: ['job', 'kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const job of source.jobs()) {
        if (job.last_chunks_written != null) this.set({ job: job.job, kind: 'new' }, job.last_chunks_written);
        if (job.last_chunks_reused != null)
          this.set({ job: job.job, kind: 'reused' }, job.last_chunks_reused);
      }
    },
  });
  new Gauge({
    name: 'backy_job_last_run_outcome',
    help: "The last run's outcome: 1 for the outcome label that applies",
    labelNames: ['job', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const job of source.jobs())
        if (job.last_outcome != null) this.set({ job: job.job, outcome: job.last_outcome }, 1);
    },
  });
}

/** The daemon's own: jobs per state, workers, version. */
function daemonMetrics(registry: Registry, source: MetricsSource): void {
  new Gauge({
    name: 'backy_scheduler_jobs',
    help: 'Jobs per state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      for (const [state, count] of Object.entries(source.summary().states)) this.set({ state }, count);
    },
  });
  new Gauge({
    name: 'backy_scheduler_workers_busy',
    help: 'Workers running a backup or a verify',
    registers: [registry],
    collect() {
      this.set(source.summary().busyWorkers);
    },
  });
  new Gauge({
    name: 'backy_scheduler_worker_limit',
    help: 'global.worker-limit',
    registers: [registry],
    collect() {
      this.set(source.summary().workerLimit);
    },
  });
  new Gauge({
    name: 'backy_build_info',
    help: 'The running backy, as a label',
    labelNames: ['version'],
    registers: [registry],
  }).set({ version: source.version }, 1);
}

/** Per chunk store, from what its last purge recorded (`SchedulerSummary.stores`). */
function storeMetrics(registry: Registry, source: MetricsSource): void {
  const perStore = (name: string, help: string, value: (s: StoreStats) => number | null): void => {
    new Gauge({
      name,
      help,
      labelNames: ['store'],
      registers: [registry],
      collect() {
        this.reset();
        for (const stats of source.summary().stores) {
          const v = value(stats);
          if (v != null && Number.isFinite(v)) this.set({ store: stats.store }, v);
        }
      },
    });
  };
  perStore('backy_store_size_bytes', 'Bytes of the chunks in the store (as stored)', (s) => s.bytes);
  perStore('backy_store_chunks', 'Chunks in the store', (s) => s.chunks);
  perStore(
    'backy_store_referenced_bytes',
    "Bytes of the revisions' images in non-zero chunks (each revision once): the data before dedup",
    (s) => s.referenced_bytes,
  );
  perStore(
    'backy_store_dedup_ratio',
    'referenced bytes / stored bytes: what dedup and compression save (no sample for an empty store)',
    (s) => (s.bytes > 0 ? s.referenced_bytes / s.bytes : null),
  );
  perStore('backy_store_revisions', 'Revisions whose chunks are in the store', (s) => s.revisions);
  perStore(
    'backy_store_stats_timestamp_seconds',
    'When these store metrics were recorded: the last purge of the store (Unix time)',
    (s) => Date.parse(s.updated) / 1000,
  );
}
