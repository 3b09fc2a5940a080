import type { WebhookTargetConfig } from '@backy/core';
import type { Attempt } from './attempt.js';
import type { BackyNotification } from './event.js';
import { secretValue } from './secret.js';

const MAX_RETRY_AFTER_MS = 3_600_000;

function retryAfter(header: string | null): number | undefined {
  if (header == null) return undefined;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return Number.isFinite(ms) && ms >= 0 ? Math.min(ms, MAX_RETRY_AFTER_MS) : undefined;
}

/** POSTs `note` as JSON to the target's URL: one attempt. */
export async function postWebhook(
  target: WebhookTargetConfig,
  note: BackyNotification,
  timeoutMs: number,
): Promise<Attempt> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'backy-notify/1',
  };
  const secret = target['secret-header'];
  if (secret != null) {
    try {
      headers[secret.name.toLowerCase()] = await secretValue(secret, `secret-header ${secret.name}`);
    } catch (error) {
      return { ok: false, retry: false, reason: (error as Error).message };
    }
  }
  let response: Response;
  try {
    response = await fetch(target.url, {
      method: 'POST',
      headers,
      body: JSON.stringify(note),
      // A redirected POST turns into a GET on the way: the receiver is misconfigured, say so.
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const err = error as Error & { cause?: { code?: string; message?: string } };
    const why =
      err.name === 'TimeoutError'
        ? `no answer within ${timeoutMs / 1000} s`
        : (err.cause?.code ?? err.cause?.message ?? err.message);
    return { ok: false, retry: true, reason: why };
  }
  // The body is not needed; reading it frees the connection.
  await response.body?.cancel().catch(() => {});
  const status = response.status;
  if (status >= 200 && status < 300) return { ok: true };
  const reason = `HTTP ${status}${response.statusText !== '' ? ` ${response.statusText}` : ''}`;
  if (status >= 300 && status < 400)
    return {
      ok: false,
      retry: false,
      reason: `${reason}: redirected to ${response.headers.get('location') ?? '?'}; give the final URL`,
    };
  const transient = status === 408 || status === 425 || status === 429 || status >= 500;
  const after = retryAfter(response.headers.get('retry-after'));
  return { ok: false, retry: transient, reason, ...(after != null ? { retryAfterMs: after } : {}) };
}
