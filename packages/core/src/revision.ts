import { readFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { BackyError } from './errors.js';
import { writeFileAtomic } from './fs-util.js';

export const TRUST_STATES = ['trusted', 'distrusted', 'verified'] as const;
export type Trust = (typeof TRUST_STATES)[number];

export const revisionStatsSchema = z.object({
  /** Bytes of new data stored by this revision (after dedup and compression). */
  bytes_written: z.number().int().nonnegative(),
  /** Bytes read from the source. */
  bytes_read: z.number().int().nonnegative(),
  /** Wall-clock seconds the backup took. */
  duration: z.number().nonnegative(),
  chunks_written: z.number().int().nonnegative(),
  chunks_reused: z.number().int().nonnegative(),
  chunks_zero: z.number().int().nonnegative().default(0),
});
export type RevisionStats = z.infer<typeof revisionStatsSchema>;

export const verificationSchema = z.object({
  /** `full`: every chunk compared with the source; `partial`: a random sample; `none`: not checked. */
  method: z.enum(['full', 'partial', 'none']),
  chunks_checked: z.number().int().nonnegative(),
  chunks_total: z.number().int().nonnegative(),
  ok: z.boolean(),
  /** Chunk indexes that did not match the source. */
  mismatches: z.array(z.number().int()).default([]),
  timestamp: z.string(),
});
export type Verification = z.infer<typeof verificationSchema>;

export const revisionSchema = z.object({
  uuid: z.string().min(1),
  timestamp: z.string(),
  parent: z.string().nullable().default(null),
  tags: z.array(z.string()).default([]),
  trust: z.enum(TRUST_STATES).default('trusted'),
  /** Size of the image in bytes. */
  size: z.number().int().nonnegative().default(0),
  backend_type: z.enum(['chunked', 'images']).default('chunked'),
  source_type: z.string().optional(),
  stats: revisionStatsSchema.optional(),
  verification: verificationSchema.optional(),
  /** Free-form facts a source wants to remember (e.g. the RBD snapshot name). */
  source_info: z.record(z.string(), z.unknown()).optional(),
});
export type RevisionData = z.infer<typeof revisionSchema>;

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

export function revisionDate(rev: RevisionData): Date {
  return new Date(rev.timestamp);
}

export async function readRevisionFile(path: string): Promise<RevisionData> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new BackyError('IO', `reading revision ${path}: ${(error as Error).message}`, { cause: error });
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (error) {
    throw new BackyError('REVISION_INVALID', `${path}: not valid YAML`, { cause: error });
  }
  const result = revisionSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new BackyError(
      'REVISION_INVALID',
      `${path}: ${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
  }
  return result.data;
}

export async function writeRevisionFile(path: string, rev: RevisionData): Promise<void> {
  await writeFileAtomic(path, stringify(rev, { sortMapEntries: false }), { mode: 0o644 });
}
