import { z } from 'zod';

/**
 * The Consul HTTP API that fleet mode needs, on the global `fetch`: sessions (create with TTL and
 * lock-delay, renew, destroy), KV with `?acquire`/`?release`/`?cas`, blocking and stale reads, and the
 * leader. ACL tokens go in `X-Consul-Token`; `https://` addresses use TLS (the CA: the system's, or
 * NODE_EXTRA_CA_CERTS). Every failure is a ConsulError of one line naming the request and the agent.
 * (source-flyingcircus has its own small KV client for the fs-freeze handshake; sessions and locks are
 * fleet's alone, so fleet does not depend on a source plugin for them.)
 */

export type ConsulErrorKind =
  /** No TCP connection (refused, no route, DNS failure). */
  | 'unreachable'
  /** No answer within the request's time limit. */
  | 'timeout'
  /** 401/403: the ACL token is missing, unknown or lacks the permission. */
  | 'forbidden'
  /** The cluster has no leader (quorum lost, or an election under way). */
  | 'no-leader'
  /** Any other non-2xx status. */
  | 'http'
  /** A 2xx answer whose body is not what the API returns. */
  | 'invalid-response';

export class ConsulError extends Error {
  constructor(
    readonly kind: ConsulErrorKind,
    message: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(message, options?.cause == null ? undefined : { cause: options.cause });
    this.name = 'ConsulError';
    this.status = options?.status;
  }
  readonly status: number | undefined;
}

export interface ConsulClientOptions {
  /** Base URL of an agent's HTTP API (default `http://127.0.0.1:8500`); `host:port` means http. */
  address?: string;
  /** ACL token, sent as `X-Consul-Token`. */
  token?: string | null;
  /** Time limit of one non-blocking request in milliseconds (default 10 000). */
  timeoutMs?: number;
}

export interface KvEntry {
  key: string;
  value: Buffer | null;
  modifyIndex: number;
  lockIndex: number;
  /** The session holding the key's lock, if any. */
  session: string | null;
}

export interface ReadOptions {
  /** Any server may answer from its own state, without the leader (answers while quorum is lost). */
  stale?: boolean;
  /** A blocking query: wait until the data changed after this index, at most `waitMs`. */
  index?: number;
  waitMs?: number;
  signal?: AbortSignal;
}

export interface SessionOptions {
  name: string;
  /** Seconds without a renewal after which Consul invalidates the session (Consul: 10 to 86 400). */
  ttlSeconds: number;
  /** Seconds a lock released by invalidation cannot be acquired again. */
  lockDelaySeconds: number;
}

const entrySchema = z.array(
  z.object({
    Key: z.string(),
    Value: z.string().nullable().optional(),
    ModifyIndex: z.number(),
    LockIndex: z.number().optional(),
    Session: z.string().optional(),
  }),
);

/** Normalises an agent address to a base URL without a trailing slash; throws one line on nonsense. */
export function consulUrl(address: string): string {
  const text = address.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL | null = null;
  try {
    url = new URL(withScheme);
  } catch {}
  if (url == null || (url.protocol !== 'http:' && url.protocol !== 'https:'))
    throw new ConsulError(
      'http',
      `invalid Consul address ${JSON.stringify(address)} (expected e.g. http://127.0.0.1:8500 or https://consul.example:8501)`,
    );
  return url.href.replace(/\/+$/, '');
}

const keyPath = (key: string) => key.split('/').map(encodeURIComponent).join('/');

export class ConsulClient {
  readonly address: string;
  private readonly token: string | null;
  private readonly timeoutMs: number;

  constructor(options: ConsulClientOptions = {}) {
    this.address = consulUrl(options.address ?? 'http://127.0.0.1:8500');
    this.token = options.token == null || options.token === '' ? null : options.token;
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** The leader's address, or '' while the cluster has none. */
  async leader(signal?: AbortSignal): Promise<string> {
    const text = await this.text(await this.request('GET', '/v1/status/leader', { signal }), 'leader');
    return String(JSON.parse(text));
  }

  async createSession(options: SessionOptions): Promise<string> {
    const body = JSON.stringify({
      Name: options.name,
      TTL: `${options.ttlSeconds}s`,
      LockDelay: `${options.lockDelaySeconds}s`,
      // Locks of a dead session are released, not deleted: the keys keep their LockIndex history.
      Behavior: 'release',
    });
    const response = await this.request('PUT', '/v1/session/create', { body });
    const parsed = z.object({ ID: z.string() }).safeParse(await this.json(response, 'session/create'));
    if (!parsed.success) throw this.invalid('PUT /v1/session/create', 'no session ID');
    return parsed.data.ID;
  }

  /** Renews the session: false when Consul no longer knows it (invalidated). */
  async renewSession(id: string): Promise<boolean> {
    const response = await this.request('PUT', `/v1/session/renew/${id}`, { okStatuses: [404] });
    await response.text().catch(() => '');
    return response.status !== 404;
  }

  async destroySession(id: string): Promise<void> {
    await (await this.request('PUT', `/v1/session/destroy/${id}`, {})).text();
  }

  /** Takes the lock on `key` for `session` (writing `value`): false when another session holds it or lock-delay runs. */
  async acquire(key: string, session: string, value: string): Promise<boolean> {
    return this.bool('PUT', `/v1/kv/${keyPath(key)}?acquire=${session}`, value);
  }

  /** Releases `session`'s lock on `key` (true also when it held none there). */
  async release(key: string, session: string, value?: string): Promise<boolean> {
    return this.bool('PUT', `/v1/kv/${keyPath(key)}?release=${session}`, value);
  }

  /** Writes `key`; with `cas`, only while its ModifyIndex is still that (0: only if absent). */
  async put(key: string, value: string, cas?: number): Promise<boolean> {
    return this.bool('PUT', `/v1/kv/${keyPath(key)}${cas == null ? '' : `?cas=${cas}`}`, value);
  }

  async get(key: string, options: ReadOptions = {}): Promise<KvEntry | null> {
    return (await this.read(keyPath(key), options)).entries[0] ?? null;
  }

  /** Every entry under `prefix`, and the index to block on for the next change. */
  list(prefix: string, options: ReadOptions = {}): Promise<{ entries: KvEntry[]; index: number }> {
    return this.read(`${keyPath(prefix)}?recurse=true`, options);
  }

  private async read(path: string, options: ReadOptions): Promise<{ entries: KvEntry[]; index: number }> {
    const params: string[] = [];
    if (options.stale) params.push('stale');
    let timeoutMs = this.timeoutMs;
    if (options.index != null) {
      const waitMs = options.waitMs ?? 30_000;
      params.push(`index=${options.index}`, `wait=${Math.max(1, Math.ceil(waitMs / 1000))}s`);
      timeoutMs += waitMs + Math.ceil(waitMs / 16);
    }
    const sep = path.includes('?') ? '&' : '?';
    const full = `/v1/kv/${path}${params.length > 0 ? sep + params.join('&') : ''}`;
    const response = await this.request('GET', full, {
      okStatuses: [404],
      timeoutMs,
      signal: options.signal,
    });
    const index = Number(response.headers.get('x-consul-index') ?? 0) || 0;
    if (response.status === 404) {
      await response.text().catch(() => '');
      return { entries: [], index };
    }
    const parsed = entrySchema.safeParse(await this.json(response, `GET ${full}`));
    if (!parsed.success) throw this.invalid(`GET ${full}`, 'not a KV answer');
    const entries = parsed.data.map((e) => ({
      key: e.Key,
      value: e.Value == null ? null : Buffer.from(e.Value, 'base64'),
      modifyIndex: e.ModifyIndex,
      lockIndex: e.LockIndex ?? 0,
      session: e.Session ?? null,
    }));
    return { entries, index };
  }

  private async bool(method: string, path: string, body?: string): Promise<boolean> {
    const text = (await this.text(await this.request(method, path, { body }), path)).trim();
    if (text === 'true' || text === 'false') return text === 'true';
    throw this.invalid(`${method} ${path}`, `${JSON.stringify(text.slice(0, 80))} instead of true/false`);
  }

  private async request(
    method: string,
    path: string,
    options: { body?: string; okStatuses?: number[]; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<Response> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal == null ? timeout : AbortSignal.any([options.signal, timeout]);
    const what = `${method} ${this.address}${path.replace(/\?.*$/, '')}`;
    const headers: Record<string, string> = {};
    if (this.token != null) headers['X-Consul-Token'] = this.token;
    let response: Response;
    try {
      response = await fetch(`${this.address}${path}`, { method, headers, body: options.body, signal });
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      const err = error as Error & { cause?: { code?: string; message?: string } };
      if (err?.name === 'TimeoutError' || err?.name === 'AbortError')
        throw new ConsulError('timeout', `Consul did not answer ${what} within ${timeoutMs / 1000} s`, {
          cause: error,
        });
      const reason = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(error);
      throw new ConsulError('unreachable', `Consul at ${this.address} is unreachable (${reason})`, {
        cause: error,
      });
    }
    if (response.ok || options.okStatuses?.includes(response.status)) return response;
    const text = (await response.text().catch(() => '')).trim().replace(/\s+/g, ' ').slice(0, 160);
    const status = response.status;
    if (status === 401 || status === 403)
      throw new ConsulError(
        'forbidden',
        `Consul refused ${what}: ${status} ${text} (${this.token == null ? 'no ACL token was given: set fleet.token-file' : 'check the ACL token in fleet.token-file and its policy'})`,
        { status },
      );
    if (/no cluster leader|no path to datacenter|rpc error/i.test(text))
      throw new ConsulError('no-leader', `Consul has no cluster leader (${what}: ${status} ${text})`, {
        status,
      });
    throw new ConsulError('http', `Consul answered ${what} with ${status} ${text}`, { status });
  }

  private async text(response: Response, what: string): Promise<string> {
    try {
      return await response.text();
    } catch (error) {
      throw new ConsulError('invalid-response', `reading Consul's answer to ${what} failed`, {
        cause: error,
      });
    }
  }

  private async json(response: Response, what: string): Promise<unknown> {
    const text = await this.text(response, what);
    try {
      return JSON.parse(text);
    } catch {
      throw this.invalid(what, `not JSON: ${JSON.stringify(text.slice(0, 80))}`);
    }
  }

  private invalid(what: string, detail: string): ConsulError {
    return new ConsulError('invalid-response', `${this.address} answered ${what} with ${detail}`);
  }
}
