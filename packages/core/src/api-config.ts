import { isAbsolute } from 'node:path';
import { z } from 'zod';

/**
 * The central config's `api`: the daemon's HTTP API, metrics and page (docs/api.md). Off unless it has
 * `listen`; every request needs a token of one of `tokens`.
 */

/** What a token may do: `read` (status, jobs, metrics: monitoring) or also `operator` (run, reload). */
export const API_ROLES = ['read', 'operator'] as const;
export type ApiRole = (typeof API_ROLES)[number];

const absolutePath = z.string().refine(isAbsolute, 'must be an absolute path');

const tokenSchema = z
  .strictObject({
    /** Who uses it, for the log (the token itself is never logged). */
    name: z.string().min(1),
    role: z.enum(API_ROLES),
    value: z.string().min(16, 'tokens must be at least 16 characters long').optional(),
    /** A file whose first line is the token (it must not be readable by other users). */
    file: absolutePath.optional(),
  })
  .refine((t) => (t.value == null) !== (t.file == null), 'give exactly one of value and file');

/** `HOST:PORT`, `[IPv6]:PORT` or a bare port (on 127.0.0.1 and ::1); null when it is none of them. */
function listenAddresses(value: string | number): ApiListenAddress[] | null {
  if (typeof value === 'number')
    return [
      { host: '127.0.0.1', port: value },
      { host: '::1', port: value },
    ];
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (match == null || Number(match[3]) > 65535) return null;
  return [{ host: match[1] ?? match[2]!, port: Number(match[3]) }];
}

const listenEntry = z.union([z.number().int().min(0).max(65535), z.string().min(1)], {
  error: 'expected HOST:PORT, [IPv6]:PORT or a port',
});

export const apiConfigSchema = z.strictObject({
  /** Where it listens: one or more of `HOST:PORT`, `[IPv6]:PORT`, or a port on loopback. */
  listen: z.union([listenEntry, z.array(listenEntry).min(1)]).transform((value, ctx) => {
    const out: ApiListenAddress[] = [];
    for (const [i, entry] of (Array.isArray(value) ? value : [value]).entries()) {
      const addresses = listenAddresses(entry);
      if (addresses == null)
        ctx.addIssue({
          code: 'custom',
          path: Array.isArray(value) ? [i] : [],
          message: `expected HOST:PORT, [IPv6]:PORT or a port, got ${JSON.stringify(entry)}`,
        });
      else out.push(...addresses);
    }
    return out;
  }),
  /** HTTPS with this certificate chain and key (PEM files). */
  tls: z.strictObject({ cert: absolutePath, key: absolutePath }).optional(),
  tokens: z.array(tokenSchema).min(1, 'the API needs at least one token'),
});

export interface ApiListenAddress {
  host: string;
  port: number;
}

export interface ApiTokenConfig {
  name: string;
  role: ApiRole;
  value?: string | undefined;
  file?: string | undefined;
}

export interface ApiConfig {
  listen: ApiListenAddress[];
  tls?: { cert: string; key: string } | undefined;
  tokens: ApiTokenConfig[];
}

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameApi: Same<z.output<typeof apiConfigSchema>, ApiConfig> = true;
void sameApi;
