import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { rootCertificates } from 'node:tls';
import { type ApiConfig, type ApiRole, BackyError, readTokenFile } from '@backy/core';
import { BACKY_API_TOKEN_ENV } from './global-options.js';

// The client of the daemon's HTTP API (docs/api.md) for `backy check`, `backy jobs` and `backy run`.
// node:http(s) rather than the global fetch: fetch cannot be given a CA for one request without the
// undici package's Agent (Node does not export it), and a self-signed `api.tls.cert` must be trusted
// for exactly these requests; node:https takes `ca` per request. It also keeps undici, which Node
// loads lazily on the first fetch, out of the start-up of a Nagios check that runs every minute.

const API_TOKEN_ENV = BACKY_API_TOKEN_ENV;

/** A Nagios plugin is killed after 10 s by default; the check must say why before that. */
const TIMEOUT_MS = 8_000;

/** Where and how to reach the daemon's API. */
export interface ApiTarget {
  /** `https://127.0.0.1:6080`: the first `api.listen` address. */
  url: string;
  /** The CAs to verify the daemon's certificate with (the system's, plus `api.tls.cert`); null: HTTP. */
  ca: string[] | null;
  token: string;
  /** Where the token came from, for messages (`--token-file F`, `$BACKY_API_TOKEN`, `api.tokens.0 (ops)`). */
  tokenSource: string;
}

/** An answer of the API: the HTTP status and the parsed JSON body (null when it is not JSON). */
export interface ApiAnswer {
  status: number;
  body: unknown;
}

/** The API did not answer (connection refused, timeout, TLS failure). */
export class ApiUnreachable extends Error {
  constructor(
    readonly url: string,
    why: string,
  ) {
    super(`the daemon's HTTP API at ${url} does not answer: ${why}`);
    this.name = 'ApiUnreachable';
  }
}

/** The URL of the first listening address; a wildcard address is reached on loopback. */
export function apiUrl(config: ApiConfig): string {
  const first = config.listen[0]!;
  const host = first.host === '0.0.0.0' ? '127.0.0.1' : first.host === '::' ? '::1' : first.host;
  const shown = host.includes(':') ? `[${host}]` : host;
  return `${config.tls == null ? 'http' : 'https'}://${shown}:${first.port}`;
}

/**
 * The target for a command that needs `role`. The token: `--token-file FILE`, else `$BACKY_API_TOKEN`,
 * else the first of the config's tokens that has the least role sufficient (a `read` one for reading,
 * an `operator` one for running) and that this user can read (inline, or a file readable to them).
 */
export async function apiTarget(
  config: ApiConfig,
  options: { role: ApiRole; tokenFile?: string | undefined; env?: NodeJS.ProcessEnv },
): Promise<ApiTarget> {
  const url = apiUrl(config);
  let ca: string[] | null = null;
  if (config.tls != null) {
    try {
      // A self-signed certificate is its own CA; one signed by a real CA is verified by the system's.
      ca = [...rootCertificates, await readFile(config.tls.cert, 'utf8')];
    } catch (error) {
      throw new BackyError(
        'CONFIG_INVALID',
        `api.tls.cert ${config.tls.cert}: ${(error as NodeJS.ErrnoException).code ?? error}`,
        { cause: error },
      );
    }
  }
  const env = options.env ?? process.env;
  if (options.tokenFile != null) {
    const token = await readTokenFile(options.tokenFile, '--token-file');
    return { url, ca, token, tokenSource: `--token-file ${options.tokenFile}` };
  }
  const fromEnv = env[API_TOKEN_ENV]?.trim();
  if (fromEnv != null && fromEnv !== '') return { url, ca, token: fromEnv, tokenSource: `$${API_TOKEN_ENV}` };
  const skipped: string[] = [];
  const roles: ApiRole[] = options.role === 'read' ? ['read', 'operator'] : ['operator'];
  for (const role of roles) {
    for (const [i, t] of config.tokens.entries()) {
      if (t.role !== role) continue;
      const source = `api.tokens.${i} (${t.name})`;
      if (t.value != null) return { url, ca, token: t.value, tokenSource: source };
      try {
        return { url, ca, token: await readTokenFile(t.file!, `api.tokens.${i}.file`), tokenSource: source };
      } catch (error) {
        skipped.push((error as Error).message);
      }
    }
  }
  throw new BackyError(
    'CONFIG_INVALID',
    `no API token with role ${options.role} that this user can read: give --token-file FILE or $${API_TOKEN_ENV}${
      skipped.length > 0 ? ` (${skipped.join('; ')})` : ''
    }`,
  );
}

/** One request to the API; resolves with any HTTP answer, rejects with ApiUnreachable when there is none. */
export function apiRequest(target: ApiTarget, method: 'GET' | 'POST', path: string): Promise<ApiAnswer> {
  const url = new URL(path, target.url);
  const send = target.ca == null ? httpRequest : httpsRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method,
        headers: { authorization: `Bearer ${target.token}`, accept: 'application/json' },
        timeout: TIMEOUT_MS,
        ...(target.ca != null ? { ca: target.ca } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (error) => reject(new ApiUnreachable(target.url, error.message)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = null;
          try {
            body = JSON.parse(text);
          } catch {
            // Not JSON (a proxy's error page, say): the status alone speaks.
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000}s`)));
    req.on('error', (error: NodeJS.ErrnoException) =>
      reject(new ApiUnreachable(target.url, describeNetworkError(error))),
    );
    req.end();
  });
}

/** `ECONNREFUSED`, a TLS verification failure in words, or the message. */
function describeNetworkError(error: NodeJS.ErrnoException): string {
  if (error.code === 'ECONNREFUSED' || error.code === 'ECONNRESET' || error.code === 'EHOSTUNREACH')
    return error.code;
  return error.code != null && !error.message.includes(error.code)
    ? `${error.message} (${error.code})`
    : error.message;
}

/** The `error` line of an API's error answer, or its HTTP status. */
export function answerError(answer: ApiAnswer): string {
  const error = (answer.body as { error?: unknown } | null)?.error;
  return typeof error === 'string' ? `${answer.status} ${error}` : `HTTP ${answer.status}`;
}
