export { type ArchiveSummary, ArchiveWatcher, summarize } from './archive-state.js';
export { type CheckResult, checkStatusFile, evaluateStatus, NAGIOS, STATUS_MAX_AGE_MS } from './check.js';
export { type Clock, systemClock } from './clock.js';
export { openLogFile, type ReopeningLogFile } from './log-file.js';
export {
  ChildProcessRunner,
  type ChildProcessRunnerOptions,
  type JobRequest,
  type JobRunner,
  type RunResult,
  runProcess,
} from './runner.js';
export {
  BACKOFF_INITIAL_SECONDS,
  BACKOFF_MAX_SECONDS,
  backoffSeconds,
  type JobTimeline,
  nextSlotAfter,
  type PlannedRun,
  pickNextJob,
  planNextRun,
  type QueueEntry,
  SLA_FACTOR,
  type SlaState,
  slaState,
  slowWorkerLimit,
  sortTags,
  spreadOffsetMs,
  tagDueTime,
} from './schedule-math.js';
export {
  JOB_STATES,
  type JobState,
  type ReloadResult,
  type RunNowResult,
  Scheduler,
  type SchedulerOptions,
  type SchedulerSummary,
} from './scheduler.js';
export { type JobStatus, readStatusFile, type StatusFileContents, writeStatusFile } from './status-file.js';
