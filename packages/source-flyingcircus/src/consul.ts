import { z } from 'zod';

/**
 * A small client for Consul's KV HTTP API (`/v1/kv`), on the global `fetch`. Just what the snapshot
 * handshake needs: put, get, list a prefix (optionally as a blocking query), list keys, delete.
 */

export type ConsulErrorKind =
  /** No TCP connection (refused, no route, DNS failure…). */
  | 'unreachable'
  /** No answer within the request's time limit. */
  | 'timeout'
  /** 401/403: the ACL token is missing, unknown or lacks the permission. */
  | 'forbidden'
  /** Any other non-2xx status. */
  | 'http'
  /** A 2xx answer whose body is not what the KV API returns (a proxy, another service on the port…). */
  | 'invalid-response';

export class ConsulError extends Error {
  readonly kind: ConsulErrorKind;
  readonly status: number | undefined;

  constructor(kind: ConsulErrorKind, message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options?.cause == null ? undefined : { cause: options.cause });
    this.name = 'ConsulError';
    this.kind = kind;
    this.status = options?.status;
  }
}

export interface ConsulKvOptions {
  /** Base URL of the agent's HTTP API, e.g. `http://127.0.0.1:8500` (default). `host:port` is accepted. */
  address?: string;
  /** ACL token, sent as `X-Consul-Token`. */
  token?: string | null;
  /** Time limit of one (non-blocking) request in milliseconds (default 10 000). */
  timeoutMs?: number;
}

export interface KvEntry {
  key: string;
  /** The decoded value; null when the key has none. */
  value: Buffer | null;
  flags: number;
  createIndex: number;
  modifyIndex: number;
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

export interface BlockingOptions extends RequestOptions {
  /** Wait until the prefix changes after this index (a blocking query). */
  index?: number;
  /** Longest wait of a blocking query in milliseconds (Consul's default is 5 minutes). */
  waitMs?: number;
}

export const DEFAULT_CONSUL_ADDRESS = 'http://127.0.0.1:8500';
const DEFAULT_TIMEOUT_MS = 10_000;

const kvEntrySchema = z.object({
  Key: z.string(),
  Value: z.string().nullable().optional(),
  Flags: z.number().optional(),
  CreateIndex: z.number(),
  ModifyIndex: z.number(),
});
const kvEntriesSchema = z.array(kvEntrySchema);
const keysSchema = z.array(z.string());

/** Normalises an agent address to a base URL without a trailing slash; throws on nonsense. */
export function normalizeConsulAddress(address: string): string {
  const text = address.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ConsulError(
      'http',
      `invalid Consul address ${JSON.stringify(address)} (expected e.g. http://127.0.0.1:8500)`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConsulError(
      'http',
      `invalid Consul address ${JSON.stringify(address)}: only http and https are supported`,
    );
  }
  return url.href.replace(/\/+$/, '');
}

/** Encodes a key for the URL path, keeping the `/` separators. */
function keyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

export class ConsulKv {
  readonly address: string;
  /** Time limit of one (non-blocking) request in milliseconds. */
  readonly timeoutMs: number;
  private readonly token: string | null;

  constructor(options: ConsulKvOptions = {}) {
    this.address = normalizeConsulAddress(options.address ?? DEFAULT_CONSUL_ADDRESS);
    this.token = options.token == null || options.token === '' ? null : options.token;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Writes `value` (objects as JSON) to `key`. With `cas`, only if the key's ModifyIndex still matches. */
  async put(
    key: string,
    value: string | Uint8Array | object,
    options: RequestOptions & { cas?: number } = {},
  ): Promise<boolean> {
    const body = typeof value === 'string' || value instanceof Uint8Array ? value : JSON.stringify(value);
    const query = options.cas == null ? '' : `?cas=${options.cas}`;
    const response = await this.request('PUT', `/v1/kv/${keyPath(key)}${query}`, options, body);
    return this.parseBool(response, `PUT ${key}`);
  }

  /** Reads one key; null if it does not exist. */
  async get(key: string, options: RequestOptions = {}): Promise<KvEntry | null> {
    const response = await this.request('GET', `/v1/kv/${keyPath(key)}`, options, undefined, [404]);
    if (response.status === 404) return null;
    const entries = await this.parseJson(response, kvEntriesSchema, `GET ${key}`);
    return entries[0] == null ? null : toEntry(entries[0]);
  }

  /**
   * Lists all entries under `prefix` (`?recurse`). With `index`, a blocking query: returns when the prefix
   * changed after that index or after `waitMs`, whichever comes first.
   */
  async list(prefix: string, options: BlockingOptions = {}): Promise<ListResult> {
    const params = new URLSearchParams({ recurse: 'true' });
    let timeoutMs = options.timeoutMs;
    if (options.index != null) {
      params.set('index', String(options.index));
      const waitMs = options.waitMs ?? 5 * 60_000;
      params.set('wait', `${Math.max(1, Math.ceil(waitMs / 1000))}s`);
      // Consul adds up to wait/16 of jitter; allow that plus the normal time limit for the answer itself.
      timeoutMs ??= waitMs + Math.ceil(waitMs / 16) + this.timeoutMs;
    }
    const response = await this.request(
      'GET',
      `/v1/kv/${keyPath(prefix)}?${params}`,
      { ...options, timeoutMs },
      undefined,
      [404],
    );
    const index = parseIndex(response.headers.get('x-consul-index'));
    if (response.status === 404) return { entries: [], index };
    const entries = await this.parseJson(response, kvEntriesSchema, `GET ${prefix}?recurse`);
    return { entries: entries.map(toEntry), index };
  }

  /** Lists the keys under `prefix` (`?keys`). */
  async keys(prefix: string, options: RequestOptions = {}): Promise<string[]> {
    const response = await this.request('GET', `/v1/kv/${keyPath(prefix)}?keys`, options, undefined, [404]);
    if (response.status === 404) return [];
    return this.parseJson(response, keysSchema, `GET ${prefix}?keys`);
  }

  /** Deletes `key` (deleting a missing key succeeds). With `cas`, only if its ModifyIndex still matches. */
  async delete(key: string, options: RequestOptions & { cas?: number } = {}): Promise<boolean> {
    const query = options.cas == null ? '' : `?cas=${options.cas}`;
    const response = await this.request('DELETE', `/v1/kv/${keyPath(key)}${query}`, options);
    return this.parseBool(response, `DELETE ${key}`);
  }

  private async request(
    method: string,
    path: string,
    options: RequestOptions,
    body?: string | Uint8Array,
    okStatuses: number[] = [],
  ): Promise<Response> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal == null ? timeout : AbortSignal.any([options.signal, timeout]);
    const what = `${method} ${this.address}${path.replace(/\?.*$/, '')}`;
    const headers: Record<string, string> = {};
    if (this.token != null) headers['X-Consul-Token'] = this.token;
    let response: Response;
    try {
      response = await fetch(`${this.address}${path}`, { method, headers, body, signal });
    } catch (error) {
      throw this.fetchError(error, what, timeoutMs, options.signal);
    }
    if (response.ok || okStatuses.includes(response.status)) {
      // The body is read later under the same signal; a stalled body still ends with the time limit.
      return response;
    }
    const text = (await response.text().catch(() => '')).trim().slice(0, 200);
    const detail = `${response.status}${text ? ` ${text}` : ''}`;
    if (response.status === 401 || response.status === 403) {
      const hint =
        this.token == null
          ? 'no ACL token was given'
          : 'check the ACL token (consul_acl_token) and its policy';
      throw new ConsulError('forbidden', `Consul refused ${what}: ${detail} (${hint})`, {
        status: response.status,
      });
    }
    throw new ConsulError('http', `Consul answered ${what} with ${detail}`, { status: response.status });
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
    return new ConsulError(
      'unreachable',
      `Consul at ${this.address} is unreachable (${reason}) for ${what}`,
      { cause: error },
    );
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

  private async parseJson<T>(response: Response, schema: z.ZodType<T>, what: string): Promise<T> {
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
        `${this.address} answered ${what} with JSON that is not a Consul KV answer: ${snippet(text)}`,
      );
    }
    return result.data;
  }

  private async parseBool(response: Response, what: string): Promise<boolean> {
    const text = (await this.readText(response, what)).trim();
    if (text === 'true') return true;
    if (text === 'false') return false;
    throw new ConsulError(
      'invalid-response',
      `${this.address} answered ${what} with ${snippet(text)} instead of true/false`,
    );
  }
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
  };
}
