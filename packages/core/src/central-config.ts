import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { apiConfigSchema } from './api-config.js';
import { readYamlFile, sourceConfigSchema, storeConfigSchema, validateConfig } from './config.js';
import { fleetConfigSchema, labelsSchema } from './fleet-config.js';
import { notificationsSchema } from './notification-config.js';

export type { CentralConfig, GlobalConfig, JobConfig, VerifyJobConfig } from './central-config-types.js';

import type { CentralConfig } from './central-config-types.js';
import { retentionSchema } from './retention.js';
import { durationSchema, scheduleSchema } from './schedule.js';

/** Where the daemon and `backy check` look for the central configuration by default. */
export const DEFAULT_CENTRAL_CONFIG = '/etc/backy.conf';

/**
 * Job names become directory names under `base-dir`: one safe path component, no dot files, no
 * separators, nothing a shell or a YAML reader would trip over.
 */
export const jobNameSchema = z
  .string()
  .max(200, 'job names may be at most 200 characters long')
  .regex(
    /^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$/,
    'job names must be a single path component: letters, digits and . _ @ + -, not starting with . or -',
  );

const addressListSchema = z
  .union([z.string(), z.array(z.string())])
  .transform((value) =>
    (Array.isArray(value) ? value : value.split(',')).map((a) => a.trim()).filter((a) => a !== ''),
  );

const absolutePathSchema = z.string().refine(isAbsolute, 'must be an absolute path');

const verifyJobObjectSchema = z.strictObject({
  interval: durationSchema.optional(),
  'outdated-after': durationSchema.optional(),
});

/** `verify` of a job, or of `global` for every job: the scheduled verify job (docs/scheduler.md). */
export const verifyJobSchema = z.union([z.literal(false), verifyJobObjectSchema], {
  // A union's own message says only "Invalid input": for a mapping, say what is wrong inside it.
  error: (issue) => {
    const input = (issue as { input?: unknown }).input;
    const inner = (issue as { errors?: { path: PropertyKey[]; message: string }[][] }).errors?.[1]?.[0];
    if (input == null || typeof input !== 'object' || inner == null)
      return 'expected false or a mapping {interval, outdated-after}';
    return `${inner.path.map(String).join('.')}${inner.path.length > 0 ? ': ' : ''}${inner.message}`;
  },
});

/** The defaults of a verify job: each revision re-read about monthly, the work spread over weekly runs. */
export const DEFAULT_VERIFY_JOB = { interval: 7 * 86400, 'outdated-after': 30 * 86400 } as const;

export const globalConfigSchema = z.strictObject({
  'base-dir': z.string().min(1).default('/srv/backy'),
  'worker-limit': z.number().int().positive().default(1),
  'status-file': z.string().min(1).optional(),
  'status-interval': durationSchema.default(30),
  'telnet-addrs': addressListSchema.default(['::1', '127.0.0.1']),
  'telnet-port': z.number().int().min(0).max(65535).default(6023),
  'telnet-socket': z.union([absolutePathSchema, z.literal(false)]).optional(),
  'telnet-socket-group': z.union([z.string().min(1), z.number().int().nonnegative()]).optional(),
  'telnet-token-file': absolutePathSchema.optional(),
  'telnet-insecure-tcp': z.boolean().optional(),
  'critical-failures': z.number().int().positive().optional(),
  'metrics-textfile': absolutePathSchema.optional(),
  'backup-completed-callback': z.string().min(1).optional(),
  layout: z.enum(['chunked', 'images']).optional(),
  store: storeConfigSchema.optional(),
  'copy-to': absolutePathSchema.optional(),
  verify: verifyJobSchema.optional(),
  /** Every job's calendar retention and expiry guards (docs/retention.md), unless the job has its own. */
  retention: retentionSchema.optional(),
});

export const jobConfigSchema = z.strictObject({
  schedule: z.string().min(1),
  source: sourceConfigSchema,
  layout: z.enum(['chunked', 'images']).optional(),
  store: storeConfigSchema.optional(),
  'copy-to': z.union([absolutePathSchema, z.literal(false)]).optional(),
  verify: verifyJobSchema.optional(),
  retention: retentionSchema.optional(),
  /** Fleet mode: the labels a server needs to run this job (docs/fleet.md). */
  labels: labelsSchema.optional(),
});

export const centralConfigSchema = z
  .strictObject({
    global: globalConfigSchema.default(globalConfigSchema.parse({})),
    schedules: z.record(z.string().min(1), scheduleSchema).default({}),
    // Names are checked below, so that the error quotes the offending name.
    jobs: z.record(z.string(), jobConfigSchema).default({}),
    /** Where failures, recoveries, missed SLAs and damage are sent (docs/notifications.md). */
    notifications: notificationsSchema.default([]),
    /** The daemon's HTTP API, metrics and page (docs/api.md); off without it. */
    api: apiConfigSchema.optional(),
    /** Fleet mode: several servers as one through Consul (docs/fleet.md); off without it. */
    fleet: fleetConfigSchema.optional(),
  })
  .superRefine((config, ctx) => {
    for (const [name, schedule] of Object.entries(config.schedules)) {
      if (Object.keys(schedule).length === 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['schedules', name],
          message: 'a schedule needs at least one tag',
        });
      }
    }
    const statusFile = config.global['status-file'];
    for (const [name, job] of Object.entries(config.jobs)) {
      const nameCheck = jobNameSchema.safeParse(name);
      if (!nameCheck.success) {
        ctx.addIssue({
          code: 'custom',
          path: ['jobs'],
          message: `invalid job name ${JSON.stringify(name)}: ${nameCheck.error.issues[0]!.message}`,
        });
        continue;
      }
      if (!(job.schedule in config.schedules)) {
        const known = Object.keys(config.schedules);
        ctx.addIssue({
          code: 'custom',
          path: ['jobs', name, 'schedule'],
          message: `unknown schedule ${JSON.stringify(job.schedule)}${known.length > 0 ? ` (known: ${known.join(', ')})` : ' (no schedules defined)'}`,
        });
      }
      if ((statusFile == null && name === 'status') || statusFile === join(config.global['base-dir'], name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['jobs', name],
          message: 'job name clashes with the status file in base-dir',
        });
      }
    }
  });

/** The archive job `name`'s revisions are copied to after a backup (`copy-to`), or null for none. */
export function copyTargetOf(config: CentralConfig, name: string): string | null {
  const own = config.jobs[name]?.['copy-to'];
  if (own === false) return null;
  if (own != null) return own;
  const base = config.global['copy-to'];
  return base == null ? null : join(base, name);
}

/** A job's verify job in seconds, or null for none. */
export interface VerifyJobSettings {
  interval: number;
  outdatedAfter: number;
}

/** Job `name`'s verify job: its own `verify` over `global.verify` over the defaults; null when switched off. */
export function verifyJobOf(config: CentralConfig, name: string): VerifyJobSettings | null {
  const own = config.jobs[name]?.verify;
  const base = config.global.verify;
  if (own === false || (own == null && base === false)) return null;
  const global = base === false || base == null ? {} : base;
  return {
    interval: own?.interval ?? global.interval ?? DEFAULT_VERIFY_JOB.interval,
    outdatedAfter:
      own?.['outdated-after'] ?? global['outdated-after'] ?? DEFAULT_VERIFY_JOB['outdated-after'],
  };
}

/** A validated central config plus the raw values, which keep durations as the user wrote them. */
export interface LoadedCentralConfig {
  path: string;
  config: CentralConfig;
  raw: Record<string, unknown>;
  /** `global.status-file` or its default. */
  statusFile: string;
}

/** Parses a central config that has been read already; errors name `where` and the key path. */
export function parseCentralConfig(raw: unknown, where: string): LoadedCentralConfig {
  const config = validateConfig(centralConfigSchema, raw ?? {}, where);
  return {
    path: where,
    config,
    raw: (raw ?? {}) as Record<string, unknown>,
    statusFile: config.global['status-file'] ?? join(config.global['base-dir'], 'status'),
  };
}

/** Reads and validates `/etc/backy.conf` (or `path`). */
export async function loadCentralConfig(path: string): Promise<LoadedCentralConfig> {
  return parseCentralConfig(await readYamlFile(path), path);
}
