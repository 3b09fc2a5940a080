import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { z } from 'zod';
import { BackyError } from './errors.js';
import { revisionText } from './format/archive-files.js';
import { writeFileAtomic } from './fs-util.js';

export const TRUST_STATES = ['trusted', 'distrusted', 'verified'] as const;
export type Trust = (typeof TRUST_STATES)[number];

/** What a backup did. */
export interface RevisionStats {
  /** Bytes of new data stored by this revision (after dedup and compression). */
  bytes_written: number;
  /** Bytes read from the source. */
  bytes_read: number;
  /** Wall-clock seconds the backup took. */
  duration: number;
  chunks_written: number;
  chunks_reused: number;
  chunks_zero: number;
}

/** How a revision was checked against its source. */
export interface Verification {
  /** `full`: every chunk compared with the source; `partial`: a random sample; `none`: not checked. */
  method: 'full' | 'partial' | 'none';
  /** What the source was asked to check, e.g. `full`, `changed`, `30s 5%` (absent: the source's only way). */
  mode?: string;
  chunks_checked: number;
  chunks_total: number;
  ok: boolean;
  /** Chunk indexes that did not match the source. */
  mismatches: number[];
  timestamp: string;
}

/** How the store's Object Lock retains a revision (archive/object-lock.ts). */
export interface RevisionRetention {
  mode: 'governance' | 'compliance';
  /** Until when its `.rev` and `.map` are retained (ISO time): nobody can remove it before. */
  until: string;
  /** Every chunk it references is retained at least until then (ISO time; at least `until`). */
  chunks_until: string;
  /** Chunks whose retention its commit had to extend (the others were retained long enough). */
  chunks_extended?: number;
}

/** A revision file's content (`<id>.rev`). */
export interface RevisionData {
  uuid: string;
  timestamp: string;
  parent: string | null;
  tags: string[];
  trust: Trust;
  /**
   * When `backy verify` last re-read every chunk of the revision (ISO time; its finding is `trust`).
   * Absent: never, as in every revision written before verify recorded it. The scheduler's verify jobs
   * select revisions by it (`verify --outdated-after`).
   */
  verified_at?: string;
  /** Size of the image in bytes. */
  size: number;
  /**
   * The checksum its `.map` ends with (SHA-256 of the map's content, hex): binds the map to this
   * revision, so another revision's map copied over it is refused. Absent for revisions written before
   * (and backy 2.x's), which are read as they are.
   */
  map_checksum?: string;
  /**
   * `chunked`: a `.map` over the chunk store; `images`: a `.map` and the image file `<id>`; `cowfile`: a
   * revision written by backy 2.0–2.1, the raw image file `<id>` and no map; `legacy-chunked`: one of
   * backy 2.2–2.5, `<id>` a JSON chunk mapping over `chunks/` (see `legacyRevisionSchema`).
   */
  backend_type: 'chunked' | 'images' | 'cowfile' | 'legacy-chunked';
  source_type?: string;
  stats?: RevisionStats;
  verification?: Verification;
  /** Free-form facts a source wants to remember (e.g. the RBD snapshot name). */
  source_info?: Record<string, unknown>;
  /**
   * Set by `backy protect`: expire, forget and every other deletion leave the revision (and so its
   * chunks) alone until `backy unprotect`; `copy` carries it. Absent: not protected.
   */
  protected?: boolean;
  /** Set when the store has Object Lock: until when it retains the revision and its chunks. */
  retention?: RevisionRetention;
}

// The types are written out (not `z.infer`) so that the published declarations do not name zod;
// config-types.test.ts holds each schema to its type.
export const revisionStatsSchema = z.object({
  bytes_written: z.number().int().nonnegative(),
  bytes_read: z.number().int().nonnegative(),
  duration: z.number().nonnegative(),
  chunks_written: z.number().int().nonnegative(),
  chunks_reused: z.number().int().nonnegative(),
  chunks_zero: z.number().int().nonnegative().default(0),
});

export const verificationSchema = z.object({
  method: z.enum(['full', 'partial', 'none']),
  mode: z.string().optional(),
  chunks_checked: z.number().int().nonnegative(),
  chunks_total: z.number().int().nonnegative(),
  ok: z.boolean(),
  mismatches: z.array(z.number().int()).default([]),
  timestamp: z.string(),
});

export const revisionSchema = z.object({
  uuid: z.string().min(1),
  timestamp: z.string(),
  parent: z.string().nullable().default(null),
  tags: z.array(z.string()).default([]),
  trust: z.enum(TRUST_STATES).default('trusted'),
  verified_at: z.string().optional(),
  size: z.number().int().nonnegative().default(0),
  map_checksum: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  backend_type: z.enum(['chunked', 'images', 'cowfile', 'legacy-chunked']).default('chunked'),
  source_type: z.string().optional(),
  stats: revisionStatsSchema.optional(),
  verification: verificationSchema.optional(),
  source_info: z.record(z.string(), z.unknown()).optional(),
  protected: z.boolean().optional(),
  retention: z
    .object({
      mode: z.enum(['governance', 'compliance']),
      until: z.string(),
      chunks_until: z.string(),
      chunks_extended: z.number().int().nonnegative().optional(),
    })
    .optional(),
});

/** A complete revision: stats are present. */
export interface Revision extends RevisionData {
  stats: RevisionStats;
}

export function isComplete(data: RevisionData): data is Revision {
  return data.stats != null;
}

/**
 * A revision whose own backup found that what it stored does not match the source (the source changed
 * under the backup, or the store damaged a chunk): kept as evidence, never chosen by `last`, an index, a
 * tag or an ID prefix, and never used as a parent.
 */
export function failedOwnVerification(rev: Pick<RevisionData, 'verification'>): boolean {
  return rev.verification != null && !rev.verification.ok;
}

/** Whether `backy protect` set the revision aside from every deletion. */
export function isProtected(rev: Pick<RevisionData, 'protected'>): boolean {
  return rev.protected === true;
}

export function revisionDate(rev: RevisionData): Date {
  return new Date(rev.timestamp);
}

/**
 * A `.rev` as backy 2.0–2.1 wrote it next to the raw image `<id>` ("cowfile"): uuid, a time-zone-aware
 * timestamp (`2026-12-01 09:56:18.288538+00:00`), parent, stats with `bytes_written` and `duration`
 * (and `ceph-verification: partial` for Ceph), tags, and from 2.2 on `trust` and `backend_type`.
 */
export const legacyRevisionSchema = z.object({
  uuid: z.string().min(1),
  timestamp: z.union([z.string(), z.date()]),
  parent: z.string().nullable().optional(),
  stats: z.looseObject({ bytes_written: z.number().nonnegative(), duration: z.number().nonnegative() }),
  tags: z.array(z.string()).default([]),
  trust: z.enum(TRUST_STATES).optional(),
  backend_type: z.enum(['cowfile', 'chunked']).optional(),
});

/** Our revision for a backy 2.x `.rev` (size 0 until the archive reads its image or mapping file). */
export function fromLegacyRevision(raw: unknown): RevisionData | null {
  const legacy = legacyRevisionSchema.safeParse(raw);
  if (!legacy.success) return null;
  const l = legacy.data;
  const time = l.timestamp instanceof Date ? l.timestamp : new Date(l.timestamp.replace(' ', 'T'));
  if (Number.isNaN(time.getTime())) return null;
  const extra = Object.entries(l.stats).filter(([k]) => k !== 'bytes_written' && k !== 'duration');
  return {
    uuid: l.uuid,
    timestamp: time.toISOString(),
    parent: l.parent ?? null,
    tags: l.tags,
    trust: l.trust ?? 'trusted',
    size: 0,
    backend_type: l.backend_type === 'chunked' ? 'legacy-chunked' : 'cowfile',
    source_type: 'backy-2',
    stats: {
      bytes_written: Math.round(l.stats.bytes_written),
      bytes_read: 0,
      duration: l.stats.duration,
      chunks_written: 0,
      chunks_reused: 0,
      chunks_zero: 0,
    },
    ...(extra.length > 0 ? { source_info: Object.fromEntries(extra) } : {}),
  };
}

export async function readRevisionFile(path: string): Promise<RevisionData> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new BackyError('IO', `reading revision ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseRevisionText(text, path);
}

/**
 * A `.rev`'s text (format/archive-files.ts) as a revision: ours, or backy 2.x's made ours. Errors name
 * `path`, the file it came from.
 */
export function parseRevisionText(text: string, path: string): RevisionData {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (error) {
    throw new BackyError('REVISION_INVALID', `${path}: not valid YAML`, { cause: error });
  }
  const result = revisionSchema.safeParse(raw);
  if (!result.success) {
    const legacy = fromLegacyRevision(raw);
    if (legacy != null) return legacy;
    const issue = result.error.issues[0]!;
    throw new BackyError(
      'REVISION_INVALID',
      `${path}: ${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
  }
  return result.data;
}

export async function writeRevisionFile(path: string, rev: RevisionData): Promise<void> {
  await writeFileAtomic(path, revisionText(rev), { mode: 0o640 });
}
