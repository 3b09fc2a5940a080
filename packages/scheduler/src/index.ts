// What other packages use; the scheduler's own tests import its modules directly.
export {
  type CheckOptions,
  type CheckResult,
  checkJobs,
  checkStatusFile,
  DEFAULT_CRITICAL_FAILURES,
  NAGIOS,
} from './check.js';
export type { Clock } from './clock.js';
export { type FleetGate, type FleetJobView, type JobClaim, withFleetFields } from './fleet-gate.js';
export {
  isFailure,
  type JobOutcome,
  NO_OUTCOME,
  type OutcomeStatusFields,
  RECENT_RUNS,
  RUN_OUTCOMES,
  type RunOutcome,
  type RunRecord,
} from './job-outcome.js';
export type { ProgressStatus } from './job-progress.js';
export type { NameFilter, SchedulerSummary } from './job-status.js';
export type { JobState } from './job-table.js';
export { type LogFileOptions, openLogFile, type ReopeningLogFile } from './log-file.js';
export {
  type BackupRequest,
  ChildProcessRunner,
  type ChildProcessRunnerOptions,
  type JobRequest,
  type JobRunner,
  type RunProgress,
  type RunResult,
} from './runner.js';
export {
  type ReloadResult,
  type RunNowResult,
  Scheduler,
  type SchedulerOptions,
  type VerifyNowResult,
} from './scheduler.js';
export type { JobStatus } from './status-file.js';
