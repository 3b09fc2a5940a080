import type { EmailTargetConfig } from '@backy/core';
import type { Attempt } from './attempt.js';
import type { BackyNotification } from './event.js';
import { secretValue } from './secret.js';

/** The mail's subject: severity and summary, for a filter rule or a phone's lock screen. */
export function subjectOf(note: BackyNotification): string {
  return `[backy] ${note.severity.toUpperCase()}: ${note.summary}`;
}

/** The mail's text: the facts in lines, then the JSON body a webhook gets, for scripts. */
export function textOf(note: BackyNotification): string {
  const lines = [note.summary, ''];
  if (note.reason != null) lines.push(`Reason:   ${note.reason}`);
  if (note.job != null) lines.push(`Job:      ${note.job}`);
  if (note.consecutiveFailures != null) lines.push(`Failures: ${note.consecutiveFailures} in a row`);
  if (note.lastSuccess !== undefined) lines.push(`Last success: ${note.lastSuccess ?? 'never'}`);
  lines.push(`Host:     ${note.host}`, `Time:     ${note.at}`, `Event:    ${note.event} (${note.severity})`);
  lines.push('', JSON.stringify(note, null, 2), '');
  return lines.join('\n');
}

type Transport = { sendMail(mail: object): Promise<unknown>; close(): void };

async function transportFor(target: EmailTargetConfig, timeoutMs: number): Promise<Transport> {
  // Loaded when a mail is sent: the daemon does not pay for it at start.
  const { createTransport } = await import('nodemailer');
  const smtp = target.smtp;
  if (smtp == null) {
    return createTransport({
      sendmail: true,
      newline: 'unix',
      path: target.sendmail ?? '/usr/sbin/sendmail',
    });
  }
  const tls = smtp.tls ?? 'starttls';
  const auth =
    smtp.user != null
      ? {
          user: smtp.user,
          pass: smtp.password != null ? await secretValue(smtp.password, 'smtp.password') : '',
        }
      : undefined;
  return createTransport({
    host: smtp.host,
    port: smtp.port ?? (tls === 'implicit' ? 465 : 25),
    secure: tls === 'implicit',
    requireTLS: tls === 'starttls',
    ignoreTLS: tls === 'none',
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    ...(auth != null ? { auth } : {}),
  });
}

/** Sends `note` by mail: one attempt. */
export async function sendEmail(
  target: EmailTargetConfig,
  note: BackyNotification,
  timeoutMs: number,
): Promise<Attempt> {
  let transport: Transport;
  try {
    transport = await transportFor(target, timeoutMs);
  } catch (error) {
    return { ok: false, retry: false, reason: (error as Error).message };
  }
  try {
    await transport.sendMail({
      from: target.from,
      to: target.to,
      subject: subjectOf(note),
      text: textOf(note),
      headers: { 'X-Backy-Event': note.event, 'X-Backy-Severity': note.severity },
    });
    return { ok: true };
  } catch (error) {
    const err = error as Error & { responseCode?: number; code?: string };
    // SMTP 5xx is a permanent refusal (unknown recipient, relaying denied, bad login); 4xx and
    // connection errors may pass.
    const permanent = (err.responseCode != null && err.responseCode >= 500) || err.code === 'EAUTH';
    const firstLine = err.message.split('\n', 1)[0]!;
    return { ok: false, retry: !permanent, reason: firstLine };
  } finally {
    transport.close();
  }
}
