/**
 * `@backy/consul`: the one Consul HTTP client of backy, for fleet mode (sessions, locks, blocking and
 * stale reads) and the flyingcircus source's fs-freeze handshake (KV), so that neither depends on the other.
 */
export {
  ConsulClient,
  type ConsulClientOptions,
  type KvEntry,
  type ListResult,
  type ReadOptions,
  type RequestOptions,
  type SessionOptions,
} from './client.js';
export {
  ConsulError,
  type ConsulErrorKind,
  DEFAULT_CONSUL_ADDRESS,
  normalizeConsulAddress,
} from './error.js';
