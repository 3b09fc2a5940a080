import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCentralConfig } from '@backy/core';
import { type WebhookReceiver, type WebhookRequest, webhookReceiver } from '@backy/test-env/receivers';
import { afterEach, describe, expect, it } from 'vitest';
import { Notifier, type NotifierLog } from './notifier.js';

const receivers: WebhookReceiver[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  for (const r of receivers.splice(0)) await r.close();
});

async function receiver(statuses: number[] = []): Promise<WebhookReceiver> {
  const r = await webhookReceiver(statuses);
  receivers.push(r);
  return r;
}

function recordingLog(): NotifierLog & { lines: { level: string; fields: object; message: string }[] } {
  const lines: { level: string; fields: object; message: string }[] = [];
  return {
    lines,
    info: (fields, message) => lines.push({ level: 'info', fields, message }),
    warn: (fields, message) => lines.push({ level: 'warn', fields, message }),
  };
}

/** Targets as the daemon gets them: through the central config's validation. */
function targets(notifications: unknown[]) {
  return parseCentralConfig({ notifications }, 'backy.conf').config.notifications;
}

describe('webhook notifications', () => {
  it('posts the documented JSON body with the secret header from its file', async () => {
    const hook = await receiver();
    const dir = await mkdtemp(join(tmpdir(), 'backy-notify-'));
    dirs.push(dir);
    await writeFile(`${dir}/token`, 'Bearer s3cret\n');
    const log = recordingLog();
    const notifier = new Notifier(
      targets([
        { type: 'webhook', url: hook.url, 'secret-header': { name: 'Authorization', file: `${dir}/token` } },
      ]),
      { log },
    );
    notifier.send({
      event: 'job-failed',
      job: 'vm1',
      reason: 'source file /srv/vm1.img: not found',
      consecutiveFailures: 2,
      lastSuccessAt: null,
      at: Date.UTC(2026, 11, 5, 3, 0, 0),
      host: 'backup1',
    });
    await notifier.idle();
    expect(hook.got).toHaveLength(1);
    expect(hook.got[0]!.headers.authorization).toBe('Bearer s3cret');
    expect(hook.got[0]!.headers['content-type']).toBe('application/json');
    expect(hook.got[0]!.body).toEqual({
      version: 1,
      event: 'job-failed',
      severity: 'warning',
      at: '2026-12-05T03:00:00.000Z',
      host: 'backup1',
      job: 'vm1',
      summary: 'backup of vm1 failed',
      reason: 'source file /srv/vm1.img: not found',
      consecutiveFailures: 2,
      lastSuccess: null,
    });
    // The secret is never logged.
    expect(JSON.stringify(log.lines)).not.toContain('s3cret');
    expect(log.lines.map((l) => l.message)).toEqual(['notification sent']);
  });

  it('retries a 5xx and a refused connection with back-off, and gives up on a 4xx at once', async () => {
    const flaky = await receiver([500, 503]);
    const refusing = await receiver([400]);
    // A port nothing listens on: one that was free a moment ago.
    const gone = await receiver();
    await gone.close();
    const log = recordingLog();
    const notifier = new Notifier(
      targets([
        { name: 'flaky', type: 'webhook', url: flaky.url, retries: 3 },
        { name: 'refusing', type: 'webhook', url: refusing.url, retries: 3 },
        { name: 'down', type: 'webhook', url: gone.url, retries: 2 },
      ]),
      { log, backoffMs: 10 },
    );
    notifier.send({ event: 'copy-failed', job: 'vm2', reason: 'copy-to /srv/copy/vm2: no space left' });
    await notifier.idle();
    expect(flaky.got).toHaveLength(3);
    expect(refusing.got).toHaveLength(1);
    const byTarget = Object.fromEntries(log.lines.map((l) => [(l.fields as { target: string }).target, l]));
    expect(byTarget.flaky).toMatchObject({ level: 'info', fields: { attempts: 3 } });
    expect(byTarget.refusing).toMatchObject({
      level: 'warn',
      message: 'notification not sent: HTTP 400 Bad Request',
    });
    expect(byTarget.down).toMatchObject({ level: 'warn', fields: { attempts: 3, reason: 'ECONNREFUSED' } });
  });

  it('sends each target only the events, jobs and severities it asked for', async () => {
    const all = await receiver();
    const critical = await receiver();
    const dbJobs = await receiver();
    const notifier = new Notifier(
      targets([
        { type: 'webhook', url: all.url },
        { type: 'webhook', url: critical.url, 'min-severity': 'critical' },
        { type: 'webhook', url: dbJobs.url, jobs: ['db-*'], events: ['job-failed', 'daemon-started'] },
      ]),
      { log: recordingLog() },
    );
    notifier.send({ event: 'daemon-started' });
    notifier.send({ event: 'job-failed', job: 'db-main', reason: 'x' });
    notifier.send({ event: 'job-failed', job: 'web', reason: 'y' });
    notifier.send({ event: 'sla-missed', job: 'db-main' });
    notifier.send({ event: 'job-recovered', job: 'db-main' });
    await notifier.idle();
    const seen = (r: { got: WebhookRequest[] }) => r.got.map((g) => `${g.body.event} ${g.body.job ?? '-'}`);
    expect(seen(all)).toEqual([
      'daemon-started -',
      'job-failed db-main',
      'job-failed web',
      'sla-missed db-main',
      'job-recovered db-main',
    ]);
    expect(seen(critical)).toEqual(['sla-missed db-main']);
    expect(seen(dbJobs)).toEqual(['daemon-started -', 'job-failed db-main']);
  });

  it('close stops retrying a receiver that stays down and says whether all was sent', async () => {
    const down = await receiver([500, 500, 500, 500, 500, 500]);
    const notifier = new Notifier(targets([{ type: 'webhook', url: down.url, retries: 50 }]), {
      log: recordingLog(),
      backoffMs: 60_000,
    });
    notifier.send({ event: 'daemon-stopped' });
    const started = performance.now();
    expect(await notifier.close(200)).toBe(false);
    await notifier.idle();
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(down.got).toHaveLength(1);
  });
});

describe('notifications config', () => {
  it('names the key that is wrong', () => {
    expect(() => targets([{ type: 'webhook', url: 'ftp://x/' }])).toThrow(
      /notifications\.0\.url: must be an http/,
    );
    expect(() => targets([{ type: 'pager' }])).toThrow(/notifications\.0.*type must be webhook or email/);
    expect(() => targets([{ type: 'webhook', url: 'http://x/', events: ['job-lost'] }])).toThrow(
      /notifications\.0\.events\.0/,
    );
    expect(() =>
      targets([
        { type: 'webhook', url: 'http://x/', 'secret-header': { name: 'X-T', value: 'a', file: '/t' } },
      ]),
    ).toThrow(/secret-header.*exactly one of value and file/);
    expect(() =>
      targets([{ type: 'email', from: 'b@h', to: ['o@h'], smtp: { host: 'h' }, sendmail: '/x' }]),
    ).toThrow(/notifications\.0.*smtp or sendmail/);
  });
});
