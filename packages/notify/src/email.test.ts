import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCentralConfig } from '@backy/core';
import { type SmtpReceiver, smtpReceiver } from '@backy/test-env/receivers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Notifier, type NotifierLog } from './notifier.js';

let dir: string;
const servers: SmtpReceiver[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backy-notify-mail-'));
});
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  await rm(dir, { recursive: true, force: true });
});

async function smtp(login = false): Promise<SmtpReceiver> {
  const server = await smtpReceiver({ login });
  servers.push(server);
  return server;
}

function log(): NotifierLog & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, info: () => {}, warn: (_f, m) => warnings.push(m) };
}

const targets = (notifications: unknown[]) =>
  parseCentralConfig({ notifications }, 'backy.conf').config.notifications;

const failure = {
  event: 'job-failed',
  job: 'vm1',
  reason: 'source file /srv/vm1.img: not found',
  consecutiveFailures: 1,
  lastSuccessAt: null,
} as const;

describe('email notifications', () => {
  it('hands the mail to an SMTP server, logging in with the password from its file', async () => {
    const server = await smtp(true);
    await writeFile(join(dir, 'pw'), 'pw\n');
    const l = log();
    const notifier = new Notifier(
      targets([
        {
          type: 'email',
          from: 'backy@backup1.example',
          to: ['ops@example.org', 'oncall@example.org'],
          smtp: {
            host: '127.0.0.1',
            port: server.port,
            tls: 'none',
            user: 'backy',
            password: { file: join(dir, 'pw') },
          },
        },
      ]),
      { log: l },
    );
    notifier.send(failure);
    await notifier.idle();
    expect(l.warnings).toEqual([]);
    expect(server.mails).toHaveLength(1);
    const mail = server.mails[0]!;
    expect(mail).toMatchObject({
      from: 'backy@backup1.example',
      to: ['ops@example.org', 'oncall@example.org'],
      user: 'backy',
    });
    expect(mail.data).toContain('Subject: [backy] WARNING: backup of vm1 failed');
    expect(mail.data).toContain('X-Backy-Event: job-failed');
    expect(mail.data).toContain('Reason:   source file /srv/vm1.img: not found');
    expect(mail.data).toContain('Last success: never');
  });

  it('does not retry a recipient the server refuses (550), and says why', async () => {
    const server = await smtp();
    const l = log();
    const notifier = new Notifier(
      targets([
        {
          type: 'email',
          from: 'backy@backup1.example',
          to: ['nobody@refused.example'],
          smtp: { host: '127.0.0.1', port: server.port, tls: 'none' },
          retries: 3,
        },
      ]),
      { log: l, backoffMs: 10 },
    );
    notifier.send(failure);
    await notifier.idle();
    expect(server.mails).toEqual([]);
    expect(l.warnings).toHaveLength(1);
    expect(l.warnings[0]).toMatch(/^notification not sent: .*550/);
  });

  it('passes the mail to sendmail on stdin with the recipients as arguments', async () => {
    // Stands in for /usr/sbin/sendmail (an MTA is not installed for the tests): it keeps what sendmail
    // gets, its arguments and the message on stdin, as Debian's sendmail(8) interface has them.
    const sendmail = join(dir, 'sendmail');
    await writeFile(sendmail, `#!/bin/sh\nprintf '%s\\n' "$@" > ${dir}/args\ncat > ${dir}/message\n`);
    await chmod(sendmail, 0o755);
    const l = log();
    const notifier = new Notifier(
      targets([{ type: 'email', from: 'backy@backup1.example', to: ['ops@example.org'], sendmail }]),
      { log: l },
    );
    notifier.send({ event: 'job-recovered', job: 'vm1' });
    await notifier.idle();
    expect(l.warnings).toEqual([]);
    const args = (await readFile(join(dir, 'args'), 'utf8')).trim().split('\n');
    expect(args).toContain('ops@example.org');
    expect(args).toContain('backy@backup1.example');
    expect(await readFile(join(dir, 'message'), 'utf8')).toContain(
      'Subject: [backy] INFO: backup of vm1 succeeded again',
    );
  });
});
