import { isBackyError } from './errors.js';
import type { RevisionData } from './revision.js';
import type { ChunkStore, RevisionFileKind } from './store/contract.js';

/** An object of a revision that the store retains too short, and that verify could not extend. */
export interface RetentionFailure {
  /** `chunk <hash>`, or the revision file: `<id>.rev`, `<id>.map`. */
  object: string;
  /** What the store retained it until (ISO time), null when not at all. */
  retainedUntil: string | null;
  /** What the revision's `retention` requires (ISO time). */
  requiredUntil: string;
  reason: string;
}

/**
 * What verify found of a retained revision's Object Lock: every object it checked (its unique chunks,
 * its `.rev` and `.map`), how many were retained too short and extended, and those it could not extend.
 */
export interface RetentionVerifyResult {
  checked: number;
  fixed: number;
  failed: RetentionFailure[];
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Checks for verify that the store retains each object of a revision with `retention` as long as the
 * revision says (one HEAD each), and extends what falls short (one PutObjectRetention each). A shortfall
 * is not damage: the data is intact, only its protection was shortened (an object written again behind
 * backy's back, a bucket restored without its lock). What is known of a chunk is kept for the next
 * revisions of the same run, so a chunk shared by many costs one HEAD.
 */
export class RetentionChecker {
  private readonly known = new Map<string, number | null>();

  private constructor(
    private readonly store: ChunkStore,
    private readonly now: number,
  ) {}

  /** A checker for `store`, or null when it has no Object Lock (nothing to check). */
  static of(store: ChunkStore, now = Date.now()): RetentionChecker | null {
    if (store.objectLock == null || store.retainedUntil == null || store.retain == null) return null;
    return new RetentionChecker(store, now);
  }

  /** The check of one revision, or null when it has no retention or its retention passed already. */
  revision(rev: Pick<RevisionData, 'uuid' | 'retention'>): RevisionRetentionCheck | null {
    if (rev.retention == null) return null;
    const until = Date.parse(rev.retention.until);
    const chunksUntil = Math.max(until, Date.parse(rev.retention.chunks_until));
    if (!(chunksUntil > this.now)) return null;
    return new RevisionRetentionCheck(
      this.store,
      this.known,
      rev.uuid,
      until > this.now ? until : null,
      chunksUntil,
    );
  }
}

export class RevisionRetentionCheck {
  private readonly seen = new Set<string>();
  private readonly result: RetentionVerifyResult = { checked: 0, fixed: 0, failed: [] };

  constructor(
    private readonly store: ChunkStore,
    private readonly known: Map<string, number | null>,
    private readonly id: string,
    /** The `.rev` and `.map`'s (ms), null when it passed. */
    private readonly until: number | null,
    private readonly chunksUntil: number,
  ) {}

  /** Checks chunk `hash` (once per revision), after verify read it intact. */
  async chunk(hash: string): Promise<void> {
    if (this.seen.has(hash)) return;
    this.seen.add(hash);
    let current = this.known.get(hash);
    if (current === undefined || (current ?? 0) < this.chunksUntil) {
      // Unknown, or short when last seen: what the store says now.
      const stored = await this.store.retainedUntil!(hash);
      current = stored ?? null;
      if (stored === undefined)
        return this.fail(`chunk ${hash}`, null, this.chunksUntil, 'absent from the store');
    }
    this.result.checked++;
    const after = await this.extend(`chunk ${hash}`, current, this.chunksUntil, () =>
      this.store.retain!(hash, this.chunksUntil),
    );
    this.known.set(hash, after);
  }

  /** Checks the revision's `.rev` and `.map` in the store's catalog (when the store has one). */
  async files(): Promise<void> {
    const catalog = this.store.catalog;
    if (this.until == null || catalog?.retainedUntil == null || catalog.retain == null) return;
    const until = this.until;
    for (const kind of ['map', 'rev'] as RevisionFileKind[]) {
      const name = `${this.id}.${kind}`;
      const current = await catalog.retainedUntil(this.id, kind);
      if (current === undefined) {
        this.fail(name, null, until, 'absent from the store');
        continue;
      }
      this.result.checked++;
      await this.extend(name, current, until, () => catalog.retain!(this.id, kind, until));
    }
  }

  done(): RetentionVerifyResult {
    return this.result;
  }

  /** Extends `object`'s retention when `current` falls short of `until`; what it is retained until now. */
  private async extend(
    object: string,
    current: number | null,
    until: number,
    retain: () => Promise<number | null>,
  ): Promise<number | null> {
    if (current != null && current >= until) return current;
    try {
      const after = await retain();
      if (after == null) {
        this.fail(object, current, until, 'absent from the store');
        return current;
      }
      this.result.fixed++;
      return after;
    } catch (error) {
      if (!isBackyError(error) || error.code === 'ABORTED' || error.code === 'LOCKED') throw error;
      this.fail(object, current, until, error.message);
      return current;
    }
  }

  private fail(object: string, current: number | null, until: number, reason: string): void {
    this.result.failed.push({
      object,
      retainedUntil: current == null ? null : iso(current),
      requiredUntil: iso(until),
      reason,
    });
  }
}
