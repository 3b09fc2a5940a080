import type { NotificationTargetConfig } from '@backy/core';
import type { Attempt } from './attempt.js';
import { sendEmail } from './email.js';
import { type BackyNotification, type NotificationInput, notification } from './event.js';
import { wants } from './filter.js';
import { postWebhook } from './webhook.js';

/** Where the notifier reports deliveries (a pino logger fits). */
export interface NotifierLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface NotifierOptions {
  log: NotifierLog;
  /** The first retry waits this long, each further one twice as long (default 2 s). */
  backoffMs?: number;
  /** ... up to this (default 5 min). */
  maxBackoffMs?: number;
  /** Notifications waiting per target; beyond it the oldest is dropped, with a warning (default 100). */
  queueLimit?: number;
  /** How one attempt is made (tests only: to count or fail attempts). */
  deliver?: (
    target: NotificationTargetConfig,
    note: BackyNotification,
    timeoutMs: number,
  ) => Promise<Attempt>;
}

const DEFAULT_TIMEOUT_S = 10;
const DEFAULT_RETRIES = 5;

function deliverOnce(
  target: NotificationTargetConfig,
  note: BackyNotification,
  timeoutMs: number,
): Promise<Attempt> {
  return target.type === 'webhook'
    ? postWebhook(target, note, timeoutMs)
    : sendEmail(target, note, timeoutMs);
}

/** A target's name in logs: its own, or its type, position and where it sends (no secrets). */
export function targetName(target: NotificationTargetConfig, index: number): string {
  if (target.name != null) return target.name;
  if (target.type === 'webhook') {
    const url = new URL(target.url);
    return `webhook #${index + 1} (${url.origin}${url.pathname})`;
  }
  return `email #${index + 1} (${target.to.join(', ')})`;
}

/** One target's queue: delivered in order, one at a time, each retried with back-off. */
class TargetQueue {
  private readonly pending: BackyNotification[] = [];
  private running: Promise<void> | null = null;

  constructor(
    readonly target: NotificationTargetConfig,
    readonly name: string,
    private readonly owner: Notifier,
  ) {}

  push(note: BackyNotification): void {
    if (this.pending.length >= this.owner.queueLimit) {
      const dropped = this.pending.shift()!;
      this.owner.log.warn(
        { target: this.name, event: dropped.event, job: dropped.job },
        'notification dropped: too many are waiting for this target',
      );
    }
    this.pending.push(note);
    this.running ??= this.drain().finally(() => {
      this.running = null;
    });
  }

  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private async drain(): Promise<void> {
    for (let note = this.pending.shift(); note != null; note = this.pending.shift()) {
      await this.deliver(note);
    }
  }

  private async deliver(note: BackyNotification): Promise<void> {
    const { owner, target } = this;
    const retries = target.retries ?? DEFAULT_RETRIES;
    const timeoutMs = (target.timeout ?? DEFAULT_TIMEOUT_S) * 1000;
    const fields = { target: this.name, event: note.event, ...(note.job != null ? { job: note.job } : {}) };
    for (let attempt = 0; ; attempt++) {
      const result = await owner.deliverOne(target, note, timeoutMs);
      if (result.ok) {
        owner.log.info({ ...fields, attempts: attempt + 1 }, 'notification sent');
        return;
      }
      if (!result.retry || attempt >= retries || owner.closed) {
        owner.log.warn(
          { ...fields, attempts: attempt + 1, reason: result.reason },
          `notification not sent: ${result.reason}`,
        );
        return;
      }
      const backoff = Math.min(owner.backoffMs * 2 ** attempt, owner.maxBackoffMs);
      await owner.sleep(Math.max(backoff, result.retryAfterMs ?? 0));
      if (owner.closed) {
        owner.log.warn(
          { ...fields, attempts: attempt + 1, reason: result.reason },
          `notification not sent, the daemon stopped: ${result.reason}`,
        );
        return;
      }
    }
  }
}

/**
 * Sends notifications to the configured targets, each that wants them (docs/notifications.md): in the
 * background, in order per target, with retries and back-off; it never throws at the caller and never
 * holds up a backup. `flush` waits for what is queued (the daemon calls it on stop).
 */
export class Notifier {
  readonly log: NotifierLog;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly queueLimit: number;
  closed = false;
  private readonly queues: TargetQueue[];
  private readonly sleeping = new Set<() => void>();
  private readonly deliverFn: NonNullable<NotifierOptions['deliver']>;

  constructor(targets: readonly NotificationTargetConfig[], options: NotifierOptions) {
    this.log = options.log;
    this.backoffMs = options.backoffMs ?? 2000;
    this.maxBackoffMs = options.maxBackoffMs ?? 300_000;
    this.queueLimit = options.queueLimit ?? 100;
    this.deliverFn = options.deliver ?? deliverOnce;
    this.queues = targets.map((t, i) => new TargetQueue(t, targetName(t, i), this));
  }

  /** Queues `input` for every target that wants it; returns the notification as sent. */
  send(input: NotificationInput): BackyNotification {
    const note = notification(input);
    if (this.closed) return note;
    for (const queue of this.queues) if (wants(queue.target, note)) queue.push(note);
    return note;
  }

  /** @internal */
  async deliverOne(
    target: NotificationTargetConfig,
    note: BackyNotification,
    timeoutMs: number,
  ): Promise<Attempt> {
    try {
      return await this.deliverFn(target, note, timeoutMs);
    } catch (error) {
      return { ok: false, retry: true, reason: (error as Error).message.split('\n', 1)[0]! };
    }
  }

  /** @internal A wait that `close` cuts short. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleeping.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.sleeping.add(done);
    });
  }

  /**
   * Waits until every queued notification was sent or given up, at most `timeoutMs`; then stops retrying
   * (each target's current attempt ends, nothing further is tried). True when nothing was left.
   */
  async close(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const all = Promise.all(this.queues.map((q) => q.idle())).then(() => true);
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const finished = await Promise.race([all, late]);
    clearTimeout(timer);
    this.closed = true;
    for (const wake of [...this.sleeping]) wake();
    return finished;
  }

  /** Waits for what is queued now (tests, and a caller that wants to know). */
  async idle(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.idle()));
  }
}
