import type { Archive } from '@backy/core';
import type { Scheduler } from '@backy/scheduler';
import type { ApiBackend } from './server.js';

/** What of the daemon's Scheduler the API reads and steers. */
export type ApiScheduler = Pick<
  Scheduler,
  'jobs' | 'summary' | 'runJob' | 'runs' | 'reload' | 'archives' | 'verifyNow'
>;

/**
 * The API's view of a running Scheduler; `openArchive` opens a job's archive as the CLI does (with the
 * store drivers the archives may name).
 */
export function schedulerBackend(
  s: ApiScheduler,
  openArchive: (dir: string) => Promise<Archive>,
): ApiBackend {
  return {
    jobs: (filter) => s.jobs(filter),
    summary: () => s.summary(),
    runJob: (name) => s.runJob(name),
    runs: (name) => s.runs(name),
    reload: () => s.reload(),
    archives: () => s.archives(),
    openArchive,
    verifyRevision: (job, uuid) => s.verifyNow(job, uuid),
  };
}
