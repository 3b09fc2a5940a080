import type { JobStatus, SchedulerSummary } from '@backy/scheduler';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/** What the metrics are read from, at each scrape. */
export interface MetricsSource {
  jobs(): JobStatus[];
  summary(): SchedulerSummary;
  version: string;
}

const seconds = (iso: string | null | undefined) => (iso == null ? null : Date.parse(iso) / 1000);

/**
 * The daemon's Prometheus metrics (docs/api.md lists them), read from the scheduler at each scrape:
 * nothing is kept between scrapes, so a removed job's series disappear with it.
 */
export function createMetrics(source: MetricsSource): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
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
  // A running backup's progress; no sample for a job that is not running.
  perJob(
    'backy_job_progress_done_bytes',
    'Bytes a running backup has done in its current phase',
    (j) => j.progress?.done,
  );
  perJob(
    'backy_job_progress_total_bytes',
    'Bytes of the running backup in all (0: not known)',
    (j) => j.progress?.total,
  );
  perJob(
    'backy_job_progress_eta_seconds',
    'Seconds the running backup needs at its current rate',
    (j) => j.progress?.eta_seconds,
  );
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
  return registry;
}
