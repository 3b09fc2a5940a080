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
  /** A 2xx answer whose body is not what the API returns (a proxy, another service on the port…). */
  | 'invalid-response';

/** Every failure of the client: one line naming the request and the agent. */
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

export const DEFAULT_CONSUL_ADDRESS = 'http://127.0.0.1:8500';

/** Normalises an agent address to a base URL without a trailing slash; throws one line on nonsense. */
export function normalizeConsulAddress(address: string): string {
  const text = address.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ConsulError(
      'http',
      `invalid Consul address ${JSON.stringify(address)} (expected e.g. http://127.0.0.1:8500 or https://consul.example:8501)`,
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
