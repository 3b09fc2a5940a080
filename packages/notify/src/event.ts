import { hostname } from 'node:os';
import type { NotificationEvent, Severity } from '@backy/core';

/**
 * What a notification carries: the JSON body of a webhook and the content of an email. Version 1;
 * fields are only ever added (docs/notifications.md has the JSON Schema).
 */
export interface BackyNotification {
  version: 1;
  event: NotificationEvent;
  severity: Severity;
  /** When it happened, ISO 8601 in UTC. */
  at: string;
  /** The backup server that sends it. */
  host: string;
  /** The job it is about; absent for the daemon's own events. */
  job?: string;
  /** One line for a subject or a chat message. */
  summary: string;
  /** Why: the failed run's one-line reason, what verify found, …; absent when there is none. */
  reason?: string;
  /** Runs in a row that failed, for job events. */
  consecutiveFailures?: number;
  /** When the job last made a trusted revision, ISO 8601, for job events. */
  lastSuccess?: string | null;
}

/** How bad each event is unless the sender says otherwise. */
export const DEFAULT_SEVERITY: Readonly<Record<NotificationEvent, Severity>> = {
  'job-failed': 'warning',
  'job-recovered': 'info',
  'sla-missed': 'critical',
  'verify-damage': 'critical',
  'copy-failed': 'warning',
  'daemon-started': 'info',
  'daemon-stopped': 'info',
};

export interface NotificationInput {
  event: NotificationEvent;
  job?: string;
  reason?: string;
  severity?: Severity;
  consecutiveFailures?: number;
  lastSuccessAt?: number | null;
  /** Milliseconds since the epoch (default now). */
  at?: number;
  host?: string;
}

const SUMMARY: Record<NotificationEvent, (job: string) => string> = {
  'job-failed': (job) => `backup of ${job} failed`,
  'job-recovered': (job) => `backup of ${job} succeeded again`,
  'sla-missed': (job) => `${job} has no recent enough backup (SLA missed)`,
  'verify-damage': (job) => `verification of ${job} found damage`,
  'copy-failed': (job) => `copy of ${job} to its copy-to archive failed`,
  'daemon-started': () => 'backy scheduler started',
  'daemon-stopped': () => 'backy scheduler stopped',
};

/** The notification for `input`, with its defaults filled in. */
export function notification(input: NotificationInput): BackyNotification {
  const out: BackyNotification = {
    version: 1,
    event: input.event,
    severity: input.severity ?? DEFAULT_SEVERITY[input.event],
    at: new Date(input.at ?? Date.now()).toISOString(),
    host: input.host ?? hostname(),
    summary: SUMMARY[input.event](input.job ?? '?'),
  };
  if (input.job != null) out.job = input.job;
  if (input.reason != null && input.reason !== '') out.reason = input.reason;
  if (input.consecutiveFailures != null) out.consecutiveFailures = input.consecutiveFailures;
  if (input.lastSuccessAt !== undefined)
    out.lastSuccess = input.lastSuccessAt == null ? null : new Date(input.lastSuccessAt).toISOString();
  return out;
}
