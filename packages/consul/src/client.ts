import { z } from 'zod';
import { ConsulError, DEFAULT_CONSUL_ADDRESS, normalizeConsulAddress } from './error.js';

/**
 * The Consul HTTP API backy needs, on the global `fetch`: KV (put and delete with check-and-set, get,
 * list a prefix, list keys; reads blocking or stale), sessions (create with TTL and lock-delay, renew,
 * destroy), locks (`?acquire`/`?release`) and the leader. ACL tokens go in `X-Consul-Token`; `https://`
 * addresses use TLS (the CA: the system's, or NODE_EXTRA_CA_CERTS). Every failure is a ConsulError of
 * one line naming the request and the agent.
 */

export interface ConsulClientOptions {
  /** Base URL of an agent's HTTP API (default `http://127.0.0.1:8500`); `host:port` means http. */
  address?: string;
  /** ACL token, sent as `X-Consul-Token`. */
  token?: string | null;
  /** The setting the token comes from (e.g. `fleet.token-file`), named in a 401/403 error (default: none). */
  tokenSetting?: string;
  /** Time limit of one non-blocking request in milliseconds (default 10 000). */
  timeoutMs?: number;
}

export interface KvEntry {
  key: string;
  /** The decoded value; null when the key has none. */
  value: Buffer | null;
  flags: number;
  createIndex: number;
  modifyIndex: number;
  /** How often the key's lock was acquired (0: never). */
  lockIndex: number;
  /** The session holding the key's lock, if any. */
  session: string | null;
}

export interface ListResult {
  entries: KvEntry[];
  /** `X-Consul-Index` of the answer: pass it as `index` to wait for the next change. */
  index: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Overrides the client's time limit for this request. */
  timeoutMs?: number;
}

export interface ReadOptions extends RequestOptions {
  /** Any server may answer from its own state, without the leader (answers while quorum is lost). */
  stale?: boolean;
  /** A blocking query: wait until the data changed after this index, at most `waitMs`. */
  index?: number;
  /** Longest wait of a blocking query in milliseconds (default 5 minutes, Consul's own). */
  waitMs?: number;
}

export interface SessionOptions {
  name: string;
  /** Seconds without a renewal after which Consul invalidates the session (Consul: 10 to 86 400). */
  ttlSeconds: number;
  /** Seconds a lock released by invalidation cannot be acquired again. */
  lockDelaySeconds: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_WAIT_MS = 5 * 60_000;

const kvEntrySchema = z.object({
  Key: z.string(),
  Value: z.string().nullable().optional(),
  Flags: z.number().optional(),
  CreateIndex: z.number(),
  ModifyIndex: z.number(),
  LockIndex: z.number().optional(),
  Session: z.string().optional(),
});
const kvEntriesSchema = z.array(kvEntrySchema);
const keysSchema = z.array(z.string());
const sessionSchema = z.object({ ID: z.string() });

/** Encodes a key for the URL path, keeping the `/` separators. */
function keyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

export class ConsulClient {
  readonly address: string;
  /** Time limit of one (non-blocking) request in milliseconds. */
  readonly timeoutMs: number;
  private readonly token: string | null;
  private readonly tokenSetting: string | undefined;

  constructor(options: ConsulClientOptions = {}) {
    this.address = normalizeConsulAddress(options.address ?? DEFAULT_CONSUL_ADDRESS);
    this.token = options.token == null || options.token === '' ? null : options.token;
    this.tokenSetting = options.tokenSetting;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** The leader's address, or '' while the cluster has none. */
  async leader(options: RequestOptions = {}): Promise<string> {
    const response = await this.request('GET', '/v1/status/leader', options);
    return this.parseJson(response, z.string(), 'GET status/leader', 'a leader address');
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
    return (await this.parseJson(response, sessionSchema, 'PUT session/create', 'a session')).ID;
  }

  /** Renews the session: false when Consul no longer knows it (invalidated). */
  async renewSession(id: string): Promise<boolean> {
    const response = await this.request('PUT', `/v1/session/renew/${id}`, { okStatuses: [404] });
    await response.text().catch(() => '');
    return response.status !== 404;
  }

  async destroySession(id: string): Promise<void> {
    await this.readText(await this.request('PUT', `/v1/session/destroy/${id}`, {}), 'PUT session/destroy');
  }

  /** Takes the lock on `key` for `session` (writing `value`): false when another session holds it or lock-delay runs. */
  acquire(key: string, session: string, value: string): Promise<boolean> {
    return this.bool('PUT', key, `acquire=${session}`, { body: value });
  }

  /** Releases `session`'s lock on `key` (true also when it held none there). */
  release(key: string, session: string, value?: string): Promise<boolean> {
    return this.bool('PUT', key, `release=${session}`, { body: value });
  }

  /** Writes `value` (objects as JSON) to `key`. With `cas`, only while its ModifyIndex is still that (0: only if absent). */
  put(
    key: string,
    value: string | Uint8Array | object,
    options: RequestOptions & { cas?: number } = {},
  ): Promise<boolean> {
    const body = typeof value === 'string' || value instanceof Uint8Array ? value : JSON.stringify(value);
    return this.bool('PUT', key, options.cas == null ? '' : `cas=${options.cas}`, { ...options, body });
  }

  /** Deletes `key` (deleting a missing key succeeds). With `cas`, only if its ModifyIndex still matches. */
  delete(key: string, options: RequestOptions & { cas?: number } = {}): Promise<boolean> {
    return this.bool('DELETE', key, options.cas == null ? '' : `cas=${options.cas}`, options);
  }

  /** Reads one key; null if it does not exist. */
  async get(key: string, options: ReadOptions = {}): Promise<KvEntry | null> {
    return (await this.read(key, false, options)).entries[0] ?? null;
  }

  /**
   * Every entry under `prefix` (`?recurse`). With `index`, a blocking query: returns when the prefix
   * changed after that index or after `waitMs`, whichever comes first.
   */
  list(prefix: string, options: ReadOptions = {}): Promise<ListResult> {
    return this.read(prefix, true, options);
  }

  /** Lists the keys under `prefix` (`?keys`). */
  async keys(prefix: string, options: RequestOptions = {}): Promise<string[]> {
    const path = `/v1/kv/${keyPath(prefix)}?keys`;
    const response = await this.request('GET', path, { ...options, okStatuses: [404] });
    if (response.status === 404) {
      await response.text().catch(() => '');
      return [];
    }
    return this.parseJson(response, keysSchema, `GET ${prefix}?keys`, 'a Consul KV answer');
  }

  private async read(key: string, recurse: boolean, options: ReadOptions): Promise<ListResult> {
    const params = recurse ? ['recurse=true'] : [];
    if (options.stale) params.push('stale');
    let timeoutMs = options.timeoutMs;
    if (options.index != null) {
      const waitMs = options.waitMs ?? DEFAULT_WAIT_MS;
      params.push(`index=${options.index}`, `wait=${Math.max(1, Math.ceil(waitMs / 1000))}s`);
      // Consul adds up to wait/16 of jitter; allow that plus the normal time limit for the answer itself.
      timeoutMs ??= waitMs + Math.ceil(waitMs / 16) + this.timeoutMs;
    }
    const query = params.length > 0 ? `?${params.join('&')}` : '';
    const response = await this.request('GET', `/v1/kv/${keyPath(key)}${query}`, {
      signal: options.signal,
      timeoutMs,
      okStatuses: [404],
    });
    const index = parseIndex(response.headers.get('x-consul-index'));
    if (response.status === 404) {
      await response.text().catch(() => '');
      return { entries: [], index };
    }
    const what = `GET ${key}${recurse ? '?recurse' : ''}`;
    const entries = await this.parseJson(response, kvEntriesSchema, what, 'a Consul KV answer');
    return { entries: entries.map(toEntry), index };
  }

  /** A KV write, whose answer is `true` or `false`. */
  private async bool(
    method: string,
    key: string,
    query: string,
    options: RequestOptions & { body?: string | Uint8Array },
  ): Promise<boolean> {
    const response = await this.request(method, `/v1/kv/${keyPath(key)}${query ? `?${query}` : ''}`, options);
    // The session ID stays out of the message; the operation is enough to tell a lock from a write.
    const what = `${method} ${key}${query ? `?${query.replace(/=.*$/, '')}` : ''}`;
    const text = (await this.readText(response, what)).trim();
    if (text === 'true') return true;
    if (text === 'false') return false;
    throw new ConsulError(
      'invalid-response',
      `${this.address} answered ${what} with ${snippet(text)} instead of true/false`,
    );
  }

  private async request(
    method: string,
    path: string,
    options: RequestOptions & { body?: string | Uint8Array; okStatuses?: number[] },
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
      throw this.fetchError(error, what, timeoutMs, options.signal);
    }
    // The body is read later under the same signal; a stalled body still ends with the time limit.
    if (response.ok || options.okStatuses?.includes(response.status)) return response;
    const text = (await response.text().catch(() => '')).replace(/\s+/g, ' ').trim().slice(0, 200);
    const status = response.status;
    const detail = `${status}${text ? ` ${text}` : ''}`;
    if (status === 401 || status === 403) {
      const setting = this.tokenSetting;
      const hint =
        this.token == null
          ? `no ACL token was given${setting == null ? '' : `: set ${setting}`}`
          : `check the ACL token${setting == null ? '' : ` in ${setting}`} and its policy`;
      throw new ConsulError('forbidden', `Consul refused ${what}: ${detail} (${hint})`, { status });
    }
    if (/no cluster leader|no path to datacenter|rpc error/i.test(text))
      throw new ConsulError('no-leader', `Consul has no cluster leader (${what}: ${detail})`, { status });
    throw new ConsulError('http', `Consul answered ${what} with ${detail}`, { status });
  }

  private fetchError(error: unknown, what: string, timeoutMs: number, callerSignal?: AbortSignal): Error {
    if (callerSignal?.aborted)
      return callerSignal.reason instanceof Error ? callerSignal.reason : (error as Error);
    const err = error as Error & { cause?: { code?: string; message?: string } };
    if (err?.name === 'TimeoutError' || err?.name === 'AbortError') {
      return new ConsulError('timeout', `Consul did not answer ${what} within ${seconds(timeoutMs)}`, {
        cause: error,
      });
    }
    const reason = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(error);
    return new ConsulError('unreachable', `Consul at ${this.address} is unreachable (${reason})`, {
      cause: error,
    });
  }

  private async readText(response: Response, what: string): Promise<string> {
    try {
      return await response.text();
    } catch (error) {
      const name = (error as Error)?.name;
      const kind = name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'invalid-response';
      throw new ConsulError(
        kind,
        `reading Consul's answer to ${what} failed (${(error as Error)?.message ?? error})`,
        { cause: error },
      );
    }
  }

  private async parseJson<T>(
    response: Response,
    schema: z.ZodType<T>,
    what: string,
    expected: string,
  ): Promise<T> {
    const text = await this.readText(response, what);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (error) {
      throw new ConsulError(
        'invalid-response',
        `${this.address} answered ${what} with something that is not JSON: ${snippet(text)}`,
        { cause: error },
      );
    }
    const result = schema.safeParse(data);
    if (!result.success) {
      throw new ConsulError(
        'invalid-response',
        `${this.address} answered ${what} with JSON that is not ${expected}: ${snippet(text)}`,
      );
    }
    return result.data;
  }
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

function snippet(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return JSON.stringify(flat.length > 80 ? `${flat.slice(0, 80)}…` : flat);
}

function parseIndex(header: string | null): number {
  const n = header == null ? Number.NaN : Number(header);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

function toEntry(raw: z.infer<typeof kvEntrySchema>): KvEntry {
  return {
    key: raw.Key,
    value: raw.Value == null ? null : Buffer.from(raw.Value, 'base64'),
    flags: raw.Flags ?? 0,
    createIndex: raw.CreateIndex,
    modifyIndex: raw.ModifyIndex,
    lockIndex: raw.LockIndex ?? 0,
    session: raw.Session ?? null,
  };
}
