import type { NotificationTargetConfig } from '@backy/core';
import type { NotificationInput, Notifier, NotifierLog } from '@backy/notify';
import { DEFAULT_CRITICAL_FAILURES } from './check.js';
import { isFailure, type JobOutcome } from './job-outcome.js';
import type { JobStatus } from './status-file.js';

/**
 * What a run's outcome tells the operator (docs/notifications.md): the first failure, and again when the
 * failures in a row reach `critical-failures` (then CRITICAL, as `backy check`), not every retry in
 * between; a recovery after failures; damage found by the backup's own verification. Null: nothing.
 */
export function outcomeNotice(
  job: string,
  previous: JobOutcome,
  next: JobOutcome,
  criticalFailures = DEFAULT_CRITICAL_FAILURES,
): NotificationInput | null {
  const facts = {
    job,
    consecutiveFailures: next.consecutiveFailures,
    lastSuccessAt: next.lastSuccessAt,
    ...(next.lastRunAt != null ? { at: next.lastRunAt } : {}),
    ...(next.reason != null ? { reason: next.reason } : {}),
  };
  const outcome = next.lastOutcome;
  if (outcome === 'ok') return previous.consecutiveFailures > 0 ? { event: 'job-recovered', ...facts } : null;
  if (outcome === 'verification-failed') return { event: 'verify-damage', ...facts };
  if (outcome == null || !isFailure(outcome)) return null;
  const count = next.consecutiveFailures;
  if (count !== 1 && count !== criticalFailures) return null;
  return {
    event: outcome === 'copy-failed' ? 'copy-failed' : 'job-failed',
    ...(count >= criticalFailures ? { severity: 'critical' as const } : {}),
    ...facts,
  };
}

/** Builds the notifier for the config's targets (the scheduler's option, so that tests can count attempts). */
export type NotifierFactory = (targets: readonly NotificationTargetConfig[], log: NotifierLog) => Notifier;

/**
 * The daemon's notifications: one Notifier for the config in force, and the SLA state of each job so
 * that a missed SLA is sent once when it starts, not at every status interval.
 */
export class JobNotices {
  private notifier: Notifier | null = null;
  private targets: readonly NotificationTargetConfig[] = [];
  private readonly late = new Set<string>();

  constructor(
    private readonly factory: NotifierFactory,
    private readonly log: NotifierLog,
  ) {}

  /** Takes the config's targets; a changed list replaces the notifier (the old one finishes in the background). */
  configure(targets: readonly NotificationTargetConfig[]): void {
    if (this.notifier != null && JSON.stringify(targets) === JSON.stringify(this.targets)) return;
    const old = this.notifier;
    this.targets = targets;
    this.notifier = targets.length > 0 ? this.factory(targets, this.log) : null;
    if (old != null) void old.close(60_000);
  }

  send(input: NotificationInput | null): void {
    if (input != null) this.notifier?.send(input);
  }

  /** After each status: a job newly out of its SLA is sent; one back within it may be sent again later. */
  watchSla(jobs: readonly JobStatus[]): void {
    for (const job of jobs) {
      if (job.sla === 'OK') {
        this.late.delete(job.job);
        continue;
      }
      if (this.late.has(job.job)) continue;
      this.late.add(job.job);
      this.send({
        event: 'sla-missed',
        job: job.job,
        reason: `no backup since ${job.last_time ?? 'ever'}; overdue by ${job.sla_overdue} s`,
      });
    }
  }

  /** Waits up to `timeoutMs` for what is queued (the daemon's last words), then stops retrying. */
  async close(timeoutMs: number): Promise<void> {
    await this.notifier?.close(timeoutMs);
  }
}
