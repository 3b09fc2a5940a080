import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { durationSchema } from './schedule.js';

/**
 * The central config's `notifications`: where the daemon sends what an operator must hear of (a job
 * failing, recovering, missing its SLA, damage found, a failed copy, the daemon starting and stopping).
 * Delivery is `@backy/notify`'s; what the keys mean is docs/notifications.md.
 */

/** Everything the daemon notifies of, in docs/notifications.md's order. */
export const NOTIFICATION_EVENTS = [
  'job-failed',
  'job-recovered',
  'sla-missed',
  'verify-damage',
  'copy-failed',
  'daemon-started',
  'daemon-stopped',
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

/** How bad an event is; a target's `min-severity` drops the ones below it. */
export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** A secret given inline or, better, in a file (its first line; the config can then be world-readable). */
const secretSchema = z
  .strictObject({
    value: z.string().min(1).optional(),
    file: z.string().refine(isAbsolute, 'must be an absolute path').optional(),
  })
  .refine((s) => (s.value == null) !== (s.file == null), 'give exactly one of value and file');

const filterShape = {
  /** Only these events (default: all). */
  events: z.array(z.enum(NOTIFICATION_EVENTS)).min(1).optional(),
  /** Only events of these jobs: names or `*` patterns (default: all, and the daemon's own events). */
  jobs: z.array(z.string().min(1)).min(1).optional(),
  /** Drop events below this severity (default `info`: everything). */
  'min-severity': z.enum(SEVERITIES).optional(),
  /** Attempts after the first one that failed for a reason that may pass (default 5). */
  retries: z.number().int().min(0).max(100).optional(),
  /** Longest wait for one attempt (default 10s). */
  timeout: durationSchema.optional(),
};

const webhookSchema = z.strictObject({
  /** A name for the logs and messages (default: the type and its position). */
  name: z.string().min(1).optional(),
  type: z.literal('webhook'),
  /** Where the JSON body is POSTed (http or https). */
  url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  /** A header sent with every request, e.g. `{name: Authorization, file: /etc/backy/hook-token}`. */
  'secret-header': z
    .strictObject({ name: z.string().regex(/^[A-Za-z0-9-]+$/, 'must be an HTTP header name') })
    .and(secretSchema)
    .optional(),
  ...filterShape,
});

const smtpSchema = z.strictObject({
  host: z.string().min(1),
  /** Default 25, or 465 with `tls: implicit`. */
  port: z.number().int().min(1).max(65535).optional(),
  /** `starttls` (default: required), `implicit` (TLS from the first byte, port 465), or `none`. */
  tls: z.enum(['starttls', 'implicit', 'none']).optional(),
  user: z.string().min(1).optional(),
  password: secretSchema.optional(),
});

const emailSchema = z
  .strictObject({
    name: z.string().min(1).optional(),
    type: z.literal('email'),
    from: z.string().min(3),
    to: z.array(z.string().min(3)).min(1),
    /** An SMTP server to hand the mail to; without it, the local `sendmail`. */
    smtp: smtpSchema.optional(),
    /** The sendmail program (default /usr/sbin/sendmail). */
    sendmail: z.string().refine(isAbsolute, 'must be an absolute path').optional(),
    ...filterShape,
  })
  .refine((e) => e.smtp == null || e.sendmail == null, 'give smtp or sendmail, not both');

/** One target of `notifications`. */
export const notificationTargetSchema = z.discriminatedUnion('type', [webhookSchema, emailSchema], {
  error: (issue) => (issue.code === 'invalid_union' ? 'type must be webhook or email' : undefined),
});

export const notificationsSchema = z.array(notificationTargetSchema);

/** A secret: inline or in a file. */
export interface SecretConfig {
  value?: string | undefined;
  file?: string | undefined;
}

interface TargetFilter {
  events?: NotificationEvent[] | undefined;
  jobs?: string[] | undefined;
  'min-severity'?: Severity | undefined;
  retries?: number | undefined;
  /** Seconds. */
  timeout?: number | undefined;
}

export interface WebhookTargetConfig extends TargetFilter {
  name?: string | undefined;
  type: 'webhook';
  url: string;
  'secret-header'?: ({ name: string } & SecretConfig) | undefined;
}

export interface EmailTargetConfig extends TargetFilter {
  name?: string | undefined;
  type: 'email';
  from: string;
  to: string[];
  smtp?:
    | {
        host: string;
        port?: number | undefined;
        tls?: 'starttls' | 'implicit' | 'none' | undefined;
        user?: string | undefined;
        password?: SecretConfig | undefined;
      }
    | undefined;
  sendmail?: string | undefined;
}

export type NotificationTargetConfig = WebhookTargetConfig | EmailTargetConfig;

// The plain types above are what the published declarations show; this keeps them equal to the schema.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameTarget: Same<z.output<typeof notificationTargetSchema>, NotificationTargetConfig> = true;
void sameTarget;
