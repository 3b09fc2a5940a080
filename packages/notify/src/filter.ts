import { type NotificationTargetConfig, SEVERITIES } from '@backy/core';
import type { BackyNotification } from './event.js';

/** A job pattern: `*` stands for any run of characters, everything else for itself. */
function patternRegExp(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

/** Whether `target` wants `note`: its event, job and severity filters (docs/notifications.md). */
export function wants(target: NotificationTargetConfig, note: BackyNotification): boolean {
  if (target.events != null && !target.events.includes(note.event)) return false;
  const min = target['min-severity'] ?? 'info';
  if (SEVERITIES.indexOf(note.severity) < SEVERITIES.indexOf(min)) return false;
  if (target.jobs != null) {
    // The daemon's own events concern every job.
    if (note.job == null) return true;
    return target.jobs.some((p) => patternRegExp(p).test(note.job!));
  }
  return true;
}
