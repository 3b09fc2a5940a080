// The facts of a revision the scheduler looks at, parsed fast from a `.rev`'s text: the scheduler
// looks at thousands of archives every few seconds (archive/facts.ts reads the directories). Pure.
import { parse } from 'yaml';
import { fromLegacyRevision, isComplete, type Revision, revisionSchema, TRUST_STATES } from './revision.js';

/** The fields of a complete revision the scheduler looks at. */
export interface RevisionFacts {
  uuid: string;
  time: number;
  tags: string[];
  duration: number;
  trust: Revision['trust'];
  verification: 'ok' | 'failed' | null;
  /**
   * How a flyingcircus source made the snapshot (`source_info.snapshot_method`): `agent` (file systems
   * frozen) or `direct` (a plain, crash-consistent snapshot after the agent did not answer); else null.
   */
  snapshot: 'agent' | 'direct' | null;
  /** When `backy verify` last re-read the revision (ms; `verified_at`), or null: never. */
  verifiedAt: number | null;
  /**
   * What its backup did (the `.rev`'s `stats`): bytes read from the source and written to the store,
   * chunks written anew and reused; null where the revision does not record it (backy 2.x's).
   */
  work: RevisionWork;
}

export interface RevisionWork {
  bytesRead: number | null;
  bytesWritten: number | null;
  chunksWritten: number | null;
  chunksReused: number | null;
}

const count = (value: unknown): number | null =>
  typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : null;

function workOf(stats: Record<string, unknown>): RevisionWork {
  return {
    bytesRead: count(stats.bytes_read),
    bytesWritten: count(stats.bytes_written),
    chunksWritten: count(stats.chunks_written),
    chunksReused: count(stats.chunks_reused),
  };
}

/** `verified_at` as ms; null when absent or not a time (the revision stays readable either way). */
function verifiedAtOf(value: unknown): number | null {
  if (typeof value !== 'string') return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

const snapshotOf = (value: unknown): RevisionFacts['snapshot'] =>
  value === 'agent' || value === 'direct' ? value : null;

export function factsOf(rev: Revision): RevisionFacts {
  return {
    uuid: rev.uuid,
    time: Date.parse(rev.timestamp),
    tags: rev.tags,
    duration: rev.stats.duration,
    trust: rev.trust,
    verification:
      rev.verification == null || rev.verification.method === 'none'
        ? null
        : rev.verification.ok
          ? 'ok'
          : 'failed',
    snapshot: snapshotOf(rev.source_info?.snapshot_method),
    verifiedAt: verifiedAtOf(rev.verified_at),
    work: workOf(rev.stats as unknown as Record<string, unknown>),
  };
}

/**
 * Reads the facts of a `.rev` file. The general YAML parser costs ~0.2 ms per file, which is seconds
 * for a thousand archives, so the block-style mapping our own writer produces is read line by line;
 * anything else (flow style, anchors, multi-line scalars, odd quoting) goes to the YAML parser and the
 * schema. Returns null for an incomplete or invalid revision.
 */
export function parseRevisionFacts(text: string): RevisionFacts | null {
  const fast = quickRevisionFacts(text);
  if (fast !== undefined) return fast;
  let raw: unknown;
  try {
    raw = parse(text);
  } catch {
    return null;
  }
  const result = revisionSchema.safeParse(raw);
  // A backy 2.x revision has facts too (its image file is the archive's business, not the scheduler's).
  const data = result.success ? result.data : fromLegacyRevision(raw);
  if (data == null || !isComplete(data)) return null;
  return factsOf(data);
}

const KEY_LINE = /^([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?$/;
const NESTED_KEY_LINE = /^ {2}([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?$/;
const PLAIN = /^[A-Za-z0-9_][A-Za-z0-9_.:+-]*$/;

/** A scalar as yaml writes it; undefined when it needs the real parser. */
function scalar(value: string): string | number | boolean | null | undefined {
  if (value === 'null' || value === '~') return null;
  if (value === 'true') return true;
  if (value === 'false') return false;
  if (/^-?\d+(\.\d+)?(e[+-]?\d+)?$/i.test(value)) return Number(value);
  if (PLAIN.test(value) && !value.includes(': ') && !value.endsWith(':')) return value;
  return undefined;
}

/** The fast path (exported for tests): undefined means "let the YAML parser decide", null means "not a complete revision". */
export function quickRevisionFacts(text: string): RevisionFacts | null | undefined {
  const top: Record<string, unknown> = {};
  const nested: Record<string, Record<string, unknown>> = {};
  let tags: string[] | null = null;
  let snapshot: RevisionFacts['snapshot'] = null;
  let section: string | null = null;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith(' ')) {
      if (section == null) return undefined;
      if (section === 'tags') {
        const item = /^ {2}- (.*)$/.exec(line);
        if (item == null) return undefined;
        const tag = scalar(item[1]!);
        if (typeof tag !== 'string') return undefined;
        tags!.push(tag);
        continue;
      }
      if (section === 'source_info') {
        const method = /^ {2}snapshot_method: (.*)$/.exec(line);
        if (method != null) snapshot = snapshotOf(scalar(method[1]!));
        continue;
      }
      if (section !== 'stats' && section !== 'verification') continue;
      const entry = NESTED_KEY_LINE.exec(line);
      if (entry == null) {
        // Deeper content (the list of mismatching chunks) is not needed, but must be plain.
        if (section === 'verification' && /^ {4}- -?\d+$/.test(line)) continue;
        return undefined;
      }
      if (entry[2] == null) {
        if (section === 'verification' && entry[1] === 'mismatches') continue;
        return undefined;
      }
      const value = entry[2] === '[]' ? [] : scalar(entry[2]);
      if (value === undefined) return undefined;
      nested[section]![entry[1]!] = value;
      continue;
    }
    const entry = KEY_LINE.exec(line);
    if (entry == null) return undefined;
    const [, key, value] = entry;
    if (key! in top || key! in nested || (key === 'tags' && tags != null)) return undefined;
    if (value == null) {
      section = key!;
      if (key === 'tags') tags = [];
      else if (key === 'stats' || key === 'verification') nested[key] = {};
      continue;
    }
    section = null;
    if (key === 'tags') {
      if (value !== '[]') return undefined;
      tags = [];
      continue;
    }
    if (key === 'source_info') continue;
    const parsed = value === '{}' ? {} : scalar(value);
    if (parsed === undefined) return undefined;
    top[key!] = parsed;
  }
  const { uuid, timestamp } = top;
  const trust = top.trust ?? 'trusted';
  const stats = nested.stats;
  if (
    typeof uuid !== 'string' ||
    typeof timestamp !== 'string' ||
    !TRUST_STATES.includes(trust as Revision['trust'])
  )
    return undefined;
  const time = Date.parse(timestamp);
  if (!Number.isFinite(time)) return undefined;
  if (stats == null) return null;
  if (typeof stats.duration !== 'number') return undefined;
  const v = nested.verification;
  let verification: RevisionFacts['verification'] = null;
  if (v != null) {
    if (typeof v.ok !== 'boolean' || typeof v.method !== 'string') return undefined;
    verification = v.method === 'none' ? null : v.ok ? 'ok' : 'failed';
  }
  return {
    uuid,
    time,
    tags: tags ?? [],
    duration: stats.duration,
    trust: trust as Revision['trust'],
    verification,
    snapshot,
    verifiedAt: verifiedAtOf(top.verified_at),
    work: workOf(stats),
  };
}
