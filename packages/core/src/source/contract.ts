import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { Logger } from 'pino';
import type { RevisionData, Verification } from '../revision.js';
import type { RevisionReader, RevisionWriter } from '../revision-io.js';

/** What a source gets for one backup. */
export interface BackupContext {
  /** The revision being made (ID, tags, timestamp). Read-only. */
  readonly revision: Readonly<RevisionData>;
  /**
   * The newest complete revision if it is trusted, for incremental work; null for a full backup (first
   * backup, or the newest revision is distrusted).
   */
  readonly parent: { readonly revision: Readonly<RevisionData>; readonly reader: RevisionReader } | null;
  readonly writer: RevisionWriter;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Reports bytes read from the source (summed into the revision's stats). */
  reportRead(bytes: number): void;
  /**
   * Reports progress in bytes of the image handled so far. Pass `total` 0 when it is not known yet
   * (e.g. a diff stream of unknown length): the CLI then shows bytes done without a percentage.
   */
  progress(done: number, total: number): void;
  /** Facts to remember in the revision (e.g. a snapshot name); merged into `source_info`. */
  remember(info: Record<string, unknown>): void;
}

/** What a source gets to verify a fresh revision against the data it was made from. */
export interface VerifyContext {
  readonly revision: Readonly<RevisionData>;
  readonly reader: RevisionReader;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /**
   * Hashes of the chunks this backup stored anew. Reading these back checks what was just written;
   * chunks that were already in the store are checked by `backy verify`.
   */
  readonly freshChunks: ReadonlySet<string>;
  /**
   * True if chunk `index` of the fresh revision holds exactly `data` (the source's bytes for that chunk,
   * read again). A chunk this backup stored is read back from storage and compared byte for byte the
   * first time it comes up (which also checks what was written); any other chunk is compared by hash.
   * A chunk missing from storage counts as a mismatch.
   */
  checkChunk(index: number, data: Buffer): Promise<boolean>;
  /** Milliseconds the verification may take; a source samples to stay within it. */
  readonly budgetMs: number;
  /** Reports progress in bytes of the image checked so far, of `total` bytes to check (e.g. a sample). */
  progress(done: number, total: number): void;
  /**
   * A buffer of `length` bytes (uninitialised) to read the source's chunk into; hand it back with
   * `release` once `checkChunk` has returned. Reused buffers keep a full verification from churning
   * the garbage collector.
   */
  allocate(length: number): Buffer;
  release(buffer: Buffer): void;
}

export type VerificationResult = Omit<Verification, 'timestamp'>;

export interface BackupSource {
  /** Reads the source and reports its content to `ctx.writer`. */
  backup(ctx: BackupContext): Promise<void>;
  /**
   * Compares the fresh revision with the source (fully or a sample). Optional: without it the revision
   * records the verification method `none` ("not verified"), and only `backy verify` checks its chunks.
   */
  verify?(ctx: VerifyContext): Promise<VerificationResult>;
  /** Releases resources after backup and verify (e.g. removes old snapshots). */
  finish?(ctx: { revision: Readonly<RevisionData>; success: boolean; logger: Logger }): Promise<void>;
}

export interface SourceEnvironment {
  logger: Logger;
}

export interface SourceDefinition<Options = unknown> {
  /** The `source.type` this module implements. */
  type: string;
  /**
   * Validates `source` options from the config (without `type`). Any Standard Schema
   * (https://standardschema.dev) works: zod 3.24 or later (zod 4 included), valibot, ArkType, …
   */
  optionsSchema: StandardSchemaV1<unknown, Options>;
  create(options: Options, env: SourceEnvironment): BackupSource;
  /** Turns `backy init TYPE ARG` into options, e.g. `/srv/vm.img` → `{ filename: '/srv/vm.img' }`. */
  parseInitArgument?(argument: string): Record<string, unknown>;
  /** Warnings to show at `backy init` (e.g. the source does not exist yet). */
  checkInit?(options: Options): Promise<string[]>;
  /** A short description of the source for status output, e.g. the filename. */
  describe?(options: Options): string;
  /**
   * The option keys that are file-system paths (e.g. `['filename']`). A relative one is resolved by the
   * host against the archive directory before `create`, the rule for every path in an archive config
   * (`store.path`, `store.encryption.key-file` alike), so no path depends on where backy was started.
   */
  paths?: readonly string[];
}

/** Declares a source plugin; the module's default export. */
export function defineSource<Options>(definition: SourceDefinition<Options>): SourceDefinition<Options> {
  return definition;
}

/** Checks that a dynamically loaded module's default export has the shape of a source. */
export function isSourceDefinition(value: unknown): value is SourceDefinition {
  const v = value as SourceDefinition | null;
  return (
    v != null &&
    typeof v === 'object' &&
    typeof v.type === 'string' &&
    typeof v.create === 'function' &&
    isStandardSchema(v.optionsSchema)
  );
}

/** True for a Standard Schema (zod ≥ 3.24, valibot, ArkType, …). */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  const standard = (value as { '~standard'?: { version?: unknown; validate?: unknown } } | null)?.[
    '~standard'
  ];
  return standard != null && standard.version === 1 && typeof standard.validate === 'function';
}
