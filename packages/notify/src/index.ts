/**
 * `@backy/notify`: sends what an operator must hear of (jobs failing and recovering, missed SLAs,
 * damage, failed copies, the daemon starting and stopping) to webhooks and email; the scheduler wires
 * it to the central config's `notifications` (docs/notifications.md).
 */
export type { Attempt } from './attempt.js';
export { subjectOf, textOf } from './email.js';
export { type BackyNotification, DEFAULT_SEVERITY, type NotificationInput, notification } from './event.js';
export { wants } from './filter.js';
export { Notifier, type NotifierLog, type NotifierOptions, targetName } from './notifier.js';
