import { z } from 'zod';
import { JSON_FORMAT_VERSION } from './command.js';

/**
 * What `--json` prints, one zod schema per command (docs/json.md). The build writes each as a JSON
 * Schema into dist/schema/ (see `jsonSchemaFiles`), and the end-to-end tests validate real output
 * against those files.
 *
 * Every document is an object with `version`, the version of these shapes: it goes up when a field is
 * renamed or removed or changes its meaning, not when one is added. Keys are camelCase throughout.
 */
const version = z.literal(JSON_FORMAT_VERSION);

/** An object that may gain fields in later versions of the same format. */
const open = <T extends z.ZodRawShape>(shape: T) => z.looseObject(shape);

const revision = open({
  uuid: z.string(),
  timestamp: z.string(),
  parent: z.string().nullable(),
  tags: z.array(z.string()),
  trust: z.enum(['trusted', 'distrusted', 'verified']),
  /** When `backy verify` last re-read it (absent: never). */
  verifiedAt: z.string().optional(),
  /** SHA-256 of its chunk map, checked on every read (absent in older revisions). */
  mapChecksum: z.string().optional(),
  size: z.number().int().nonnegative(),
  backendType: z.enum(['chunked', 'images', 'cowfile', 'legacy-chunked']),
  sourceType: z.string().optional(),
  stats: open({
    bytesWritten: z.number().int().nonnegative(),
    bytesRead: z.number().int().nonnegative(),
    duration: z.number().nonnegative(),
    chunksWritten: z.number().int().nonnegative(),
    chunksReused: z.number().int().nonnegative(),
    chunksZero: z.number().int().nonnegative(),
  }),
  verification: open({
    method: z.enum(['full', 'partial', 'none']),
    mode: z.string().optional(),
    chunksChecked: z.number().int().nonnegative(),
    chunksTotal: z.number().int().nonnegative(),
    ok: z.boolean(),
    mismatches: z.array(z.number().int()),
    timestamp: z.string(),
  }).optional(),
  sourceInfo: z.record(z.string(), z.unknown()).optional(),
  /** Set by `backy protect` (absent: not protected). */
  protected: z.boolean().optional(),
});

/** A revision a command changed (or would): what it is now, and what happened to it. */
const changedRevision = <R extends [string, ...string[]]>(results: R) =>
  open({ uuid: z.string(), timestamp: z.string(), tags: z.array(z.string()), result: z.enum(results) });

/** The output of each command that has `--json`, by command name. */
export const JSON_OUTPUTS = {
  init: open({
    version,
    archive: z.string(),
    sourceType: z.string(),
    source: z.string().nullable(),
    layout: z.enum(['chunked', 'images']),
  }),
  backup: open({ version, revision }),
  status: open({ version, revisions: z.array(revision) }),
  find: open({ version, revision: z.string(), image: z.string().nullable() }),
  restore: open({
    version,
    revision: z.string(),
    size: z.number().int().nonnegative(),
    target: z.string(),
    kind: z.enum(['file', 'block-device']),
  }),
  verify: open({
    version,
    revisions: z.array(
      open({
        uuid: z.string(),
        result: z.enum(['verified', 'damaged', 'unreadable', 'gone']),
        damaged: z.array(
          open({ offset: z.number().int(), index: z.number().int(), hash: z.string(), reason: z.string() }),
        ),
        problem: z.string().nullable(),
        /** With Object Lock: the check of its objects' retention; null when not checked. */
        retention: open({
          checked: z.number().int().nonnegative(),
          fixed: z.number().int().nonnegative(),
          failed: z.array(
            open({
              object: z.string(),
              retainedUntil: z.string().nullable(),
              requiredUntil: z.string(),
              reason: z.string(),
            }),
          ),
        }).nullable(),
      }),
    ),
  }),
  copy: open({
    version,
    target: z.string(),
    revisions: z.array(
      open({
        uuid: z.string(),
        status: z.enum(['copied', 'present']),
        chunksSent: z.number().int().nonnegative(),
        chunksPresent: z.number().int().nonnegative(),
        bytesSent: z.number().int().nonnegative(),
        bytesStored: z.number().int().nonnegative(),
      }),
    ),
  }),
  distrust: open({
    version,
    dryRun: z.boolean(),
    revisions: z.array(changedRevision(['distrusted', 'would be distrusted', 'gone'])),
  }),
  forget: open({
    version,
    dryRun: z.boolean(),
    revisions: z.array(changedRevision(['forgotten', 'would be forgotten'])),
  }),
  tags: open({
    version,
    dryRun: z.boolean(),
    revisions: z.array(
      changedRevision(['changed', 'would be changed', 'unchanged', 'gone']).extend({
        previousTags: z.array(z.string()),
      }),
    ),
  }),
  protect: open({
    version,
    dryRun: z.boolean(),
    revisions: z.array(changedRevision(['protected', 'would be protected', 'unchanged', 'gone'])),
  }),
  unprotect: open({
    version,
    dryRun: z.boolean(),
    revisions: z.array(changedRevision(['unprotected', 'would be unprotected', 'unchanged', 'gone'])),
  }),
  expire: open({
    version,
    dryRun: z.boolean(),
    revisions: z.array(
      open({
        uuid: z.string(),
        removed: z.boolean(),
        expiredTags: z.array(z.string()),
        /** Why it stays although a rule would remove it, or the calendar rule keeping it; null: nothing. */
        keptBy: z
          .enum(['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'])
          .or(z.enum(['within', 'newest-verified', 'protected', 'manual', 'future', 'retained']))
          .nullable(),
      }),
    ),
  }),
  purge: z.union([
    open({
      version,
      dryRun: z.boolean(),
      chunksDeleted: z.number().int().nonnegative(),
      bytesFreed: z.number().int().nonnegative(),
      chunksKept: z.number().int().nonnegative(),
      bytesKept: z.number().int().nonnegative(),
      referencedBytes: z.number().int().nonnegative(),
      revisions: z.number().int().nonnegative(),
      archives: z.number().int().nonnegative(),
      staleEntries: z.array(z.string()),
      chunksRetained: z.number().int().nonnegative(),
      bytesRetained: z.number().int().nonnegative(),
      retainedUntil: z.string().nullable(),
      wouldDelete: z
        .array(
          open({
            kind: z.enum(['chunk', 'damaged', 'temporary']),
            hash: z.string().nullable(),
            path: z.string(),
            bytes: z.number().int().nonnegative(),
          }),
        )
        .optional(),
    }),
    open({ version, forgottenArchive: z.string(), store: z.string(), entries: z.number().int() }),
  ]),
  upgrade: open({
    version,
    dryRun: z.boolean(),
    revisions: z.array(
      open({
        uuid: z.string(),
        from: z.enum(['cowfile', 'legacy-chunked']),
        to: z.enum(['chunked', 'images']),
        result: z.enum(['converted', 'would be converted']),
      }),
    ),
    legacyChunksRemoved: z.number().int().nonnegative(),
  }),
  check: open({
    version,
    status: z.enum(['OK', 'WARNING', 'CRITICAL', 'UNKNOWN']),
    exitCode: z.number().int(),
    summary: z.string(),
    details: z.array(z.string()),
    statusFile: z.string().nullable(),
    /** The HTTP API's URL when the check asked the daemon through it. */
    api: z.string().nullable(),
  }),
  key: open({
    version,
    action: z.enum(['create', 'export', 'import']),
    file: z.string(),
    id: z.string(),
    passphrase: z.boolean().optional(),
    exported: z.string().optional(),
  }),
  /** What every command prints on stderr instead of its one-line error under `--json`. */
  error: open({
    version,
    error: open({ code: z.string(), message: z.string(), exitCode: z.number().int() }),
  }),
} as const;

export type JsonCommand = keyof typeof JSON_OUTPUTS;

/** dist/schema/<command>.json for every shape above (written by the build, shipped in the package). */
export function jsonSchemaFiles(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(JSON_OUTPUTS).map(([name, schema]) => {
      const json = z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' }) as Record<
        string,
        unknown
      >;
      const what = name === 'error' ? 'an error under --json (stderr)' : `backy ${name} --json`;
      json.$comment = 'Generated from packages/cli/src/json-output.ts by the build; do not edit.';
      json.title = what;
      return [`schema/${name}.json`, `${JSON.stringify(json, null, 2)}\n`];
    }),
  );
}
