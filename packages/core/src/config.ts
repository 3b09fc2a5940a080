import { readFile, stat } from 'node:fs/promises';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { isMap, isScalar, parse, parseDocument, visit } from 'yaml';
import { type ZodType, z } from 'zod';
import { BackyError } from './errors.js';
import { configError } from './plugin-options.js';
import { type Retention, retentionSchema } from './retention.js';
import { type Schedule, scheduleSchema } from './schedule.js';
import { CODECS, type CodecName } from './store/codec.js';

/** `{type, ...options}`; the options are validated by the source's own schema. */
export interface SourceConfig {
  /** A built-in source type (`file`, `ceph-rbd`, `flyingcircus`) or the name of a package that exports a source. */
  type: string;
  /** Whether a backup may record a source of 0 bytes (default false: such a backup fails). */
  'allow-empty'?: boolean;
  /** The source's own options. */
  [option: string]: unknown;
}

// The types are written out (not `z.infer`) so that the published declarations do not name zod;
// config-types.test.ts holds each schema to its type.
export const sourceConfigSchema = z.looseObject({
  type: z.string().min(1),
  'allow-empty': z.boolean().optional(),
});

/** The options a source's own schema checks: `source` without the keys backy itself reads. */
export function sourceOptionsOf(config: SourceConfig): Record<string, unknown> {
  const { type: _type, 'allow-empty': _allowEmpty, ...options } = config;
  return options;
}

const DIRECTORY_STORE_KEYS = new Set(['type', 'path', 'codec', 'encryption']);

/** `store.encryption`: client-side encryption of the store's objects (docs/storage.md, "Encryption"). */
export interface EncryptionConfig {
  /** The key file (`backy key create`); relative paths are relative to the archive. */
  'key-file': string;
  /** For a passphrase-protected key file: a file whose first line is the passphrase (default: `BACKY_PASSPHRASE_FILE`, `BACKY_PASSPHRASE_COMMAND` or `BACKY_KEY_PASSPHRASE` from the environment). */
  'passphrase-file'?: string;
}

export const encryptionConfigSchema = z.strictObject({
  'key-file': z.string().min(1),
  'passphrase-file': z.string().min(1).optional(),
});

/**
 * Where an archive's chunks live: `type: directory` (default; `path`, default `chunks` inside the
 * archive, relative to it) or a store driver's type (`s3`) with that driver's options, which the driver
 * validates when the archive is opened.
 */
export interface StoreConfig {
  /** `directory` (default) or a store driver's type, e.g. `s3`. */
  type: string;
  /** Chunk store directory (type directory); relative paths are relative to the archive. */
  path?: string;
  /** Codec for new chunks (default zstd). */
  codec: CodecName;
  /** Encrypts every object in the store (default: off). */
  encryption?: EncryptionConfig;
  /** The store driver's own options. */
  [option: string]: unknown;
}

export const storeConfigSchema = z
  .looseObject({
    type: z.string().min(1).default('directory'),
    path: z.string().min(1).optional(),
    codec: z.enum(CODECS).default('zstd'),
    encryption: encryptionConfigSchema.optional(),
  })
  .superRefine((store, ctx) => {
    if (store.type !== 'directory') return;
    const unknown = Object.keys(store).filter((k) => !DIRECTORY_STORE_KEYS.has(k));
    if (unknown.length > 0)
      ctx.addIssue({ code: 'unrecognized_keys', keys: unknown, input: store, path: [] });
  });

/** `chunked` (default): deduplicated chunk store; `images`: plain image files (see the README). */
export type ArchiveLayout = 'chunked' | 'images';

/** The configuration of one job's archive, `<archive>/config`. */
export interface ArchiveConfig {
  source: SourceConfig;
  /** Tag → {interval, keep}. Used by `expire` and the scheduler. */
  schedule: Schedule;
  /** Calendar retention and expiry's guards (docs/retention.md); absent: the schedule's tags alone. */
  retention?: Retention;
  store: StoreConfig;
  layout: ArchiveLayout;
}

export const archiveConfigSchema = z.strictObject({
  source: sourceConfigSchema,
  schedule: scheduleSchema.default({}),
  retention: retentionSchema.optional(),
  store: storeConfigSchema.default({ type: 'directory', codec: 'zstd' }),
  layout: z.enum(['chunked', 'images']).default('chunked'),
});

/** Validates `value` with `schema`; failures become CONFIG_INVALID errors naming `where` and the key path. */
export function validateConfig<T>(
  schema: ZodType<T>,
  value: unknown,
  where: string,
  prefix: readonly PropertyKey[] = [],
): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw configError(where, result.error.issues as StandardSchemaV1.Issue[], prefix);
}

/**
 * The largest config file backy reads. A central config of 40,000 jobs is about 5 MiB; a file far
 * beyond that is a mistake (or an attack), and is refused with a message instead of parsed for minutes.
 */
export const MAX_CONFIG_BYTES = 64 * 1024 * 1024;

/** Reads and parses a YAML file; syntax errors name the file and line. */
export async function readYamlFile(path: string): Promise<unknown> {
  let text: string;
  try {
    const { size } = await stat(path);
    if (size > MAX_CONFIG_BYTES)
      throw new BackyError(
        'CONFIG_INVALID',
        `${path}: ${(size / 1024 / 1024).toFixed(0)} MiB is larger than a config may be (${MAX_CONFIG_BYTES / 1024 / 1024} MiB)`,
      );
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof BackyError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new BackyError('CONFIG_NOT_FOUND', `${path}: no such file`, { cause: error });
    throw new BackyError('CONFIG_INVALID', `${path}: cannot read (${code ?? (error as Error).message})`, {
      cause: error,
    });
  }
  // The yaml package checks each mapping's keys for duplicates pair by pair, which took 13 s for a
  // central config of 40,000 jobs (quadratic); duplicateKey below does it with a set. Measured after
  // (bench:scheduler, 2 busy cores): 5k jobs 1.6 s, 40k 9.7 s, linear; most of it is yaml's parser.
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: false });
  const err = doc.errors[0] ?? duplicateKey(doc, text);
  if (err != null) {
    const line = err.linePos?.[0]?.line;
    throw new BackyError(
      'CONFIG_INVALID',
      `${path}${line ? `:${line}` : ''}: invalid YAML: ${err.message.split('\n')[0]}`,
    );
  }
  try {
    return doc.toJS() ?? {};
  } catch (error) {
    // Aliases that expand beyond yaml's limit ("billion laughs"): the file is named like any other error.
    throw new BackyError('CONFIG_INVALID', `${path}: invalid YAML: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** The first mapping key that repeats an earlier key of its mapping, as a YAML error, or null. */
function duplicateKey(
  doc: ReturnType<typeof parseDocument>,
  source: string,
): { message: string; linePos?: { line: number }[] } | null {
  let found: { message: string; linePos?: { line: number }[] } | null = null;
  visit(doc, {
    Map(_key, map) {
      if (!isMap(map)) return;
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        const key = isScalar(pair.key) ? pair.key.value : pair.key;
        if (!seen.has(key)) {
          seen.add(key);
          continue;
        }
        const offset = isScalar(pair.key) ? pair.key.range?.[0] : undefined;
        const line = offset == null ? undefined : source.slice(0, offset).split('\n').length;
        found = {
          message: `Map keys must be unique (${JSON.stringify(String(key))} repeats)`,
          ...(line == null ? {} : { linePos: [{ line }] }),
        };
        return visit.BREAK;
      }
    },
  });
  return found;
}

export async function loadArchiveConfig(path: string): Promise<ArchiveConfig> {
  return validateConfig(archiveConfigSchema, fromLegacyArchiveConfig(await readYamlFile(path)), path);
}

/**
 * backy 2.x wrote the per-archive `config` as the bare source mapping (`type: file` and `filename:`, or
 * the Ceph fields); read it as `{source: …}`, the rest at its defaults. The file itself is not changed.
 */
export function fromLegacyArchiveConfig(raw: unknown): unknown {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const record = raw as Record<string, unknown>;
  if ('source' in record || typeof record.type !== 'string') return raw;
  return { source: record };
}

export { parse as parseYaml };
