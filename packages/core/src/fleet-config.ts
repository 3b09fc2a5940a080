import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { durationSchema } from './schedule.js';

/**
 * The central config's `fleet`: several backup servers as one (docs/fleet.md). Off without it. Each
 * server names itself, its labels and its Consul agent; jobs say which labels a server needs (`labels`
 * of a job), and each job is run by one live server per slot.
 */

/** Label names and server names: what a Consul key segment and a log line hold without quoting. */
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$/;
const nameSchema = z
  .string()
  .max(200)
  .regex(NAME_RE, 'letters, digits and . _ @ + -, not starting with . or -');

/** `key: value` labels: a server's, or a job's (the labels a server needs to run it). */
export const labelsSchema = z.record(nameSchema, z.string().max(200));

export const fleetConfigSchema = z.strictObject({
  /** The Consul agent's HTTP API; `https://…` for TLS (CA: the system's or NODE_EXTRA_CA_CERTS). */
  consul: z.string().min(1).default('http://127.0.0.1:8500'),
  /** A file whose first line is the Consul ACL token (mode 0600). */
  'token-file': z.string().refine(isAbsolute, 'must be an absolute path').optional(),
  /** This server's name in the fleet (default: the host name); unique among live servers. */
  server: nameSchema.optional(),
  labels: labelsSchema.default({}),
  /**
   * Consul session TTL: a dead server's jobs move after TTL to 2×TTL plus lock-delay. Consul refuses a
   * TTL under its `session_ttl_min` (10 s unless configured lower).
   */
  'session-ttl': durationSchema
    .default(15)
    .refine((s) => s >= 1 && s <= 86_400, 'must be between 1 s and 1 day'),
  /** Consul lock-delay: how long a dead server's job locks stay untaken. */
  'lock-delay': durationSchema.default(15).refine((s) => s <= 60, "must be at most 60 s (Consul's limit)"),
  /** Where in Consul's KV the fleet keeps its keys (several fleets on one Consul use their own). */
  'key-prefix': z
    .string()
    .regex(
      /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/,
      'a KV path such as backy/fleet, without slashes at the ends',
    )
    .default('backy/fleet'),
});

/** The `fleet` section, validated. */
export interface FleetConfig {
  consul: string;
  'token-file'?: string;
  server?: string;
  labels: Record<string, string>;
  'session-ttl': number;
  'lock-delay': number;
  'key-prefix': string;
}

/** Whether a server with `labels` may run a job that needs `wanted` (every wanted label, same value). */
export function labelsSatisfy(
  labels: Record<string, string>,
  wanted: Record<string, string> | undefined,
): boolean {
  for (const [key, value] of Object.entries(wanted ?? {})) if (labels[key] !== value) return false;
  return true;
}
