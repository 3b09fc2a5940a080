import { statSync } from 'node:fs';
import {
  factsOf,
  MANUAL_TAG_PREFIX,
  type Revision,
  type RevisionFacts,
  readStoreStats,
  type StoreStats,
  scanRevisionFacts,
} from '@backy/core';
import { EMPTY_VERIFY_SUMMARY, summarizeVerification, type VerifySummary } from './verify-summary.js';

/** What the scheduler needs to know about a job's revisions. */
export interface ArchiveSummary {
  /** Complete revisions. */
  count: number;
  /** The newest complete revision's facts (time, tags, duration, trust, verification, snapshot). */
  newest: RevisionFacts | null;
  /** Start time (ms) of the newest complete revision carrying each tag. */
  lastRuns: Record<string, number>;
  /** `manual:` tags found on any revision. */
  manualTags: string[];
  /** `.rev` files that do not parse or validate: kept by backy, reported by `backy check` as WARNING. */
  damaged: string[];
  /** The archive records that it has had revisions (core's HISTORY_FILE). */
  historyStarted: boolean;
  /** Which revisions `backy verify` re-read when, and which it found damaged (verify-job.ts). */
  verify: VerifySummary;
  /** What the archive's store held at the last purge in this archive (core's store-stats.ts), or null. */
  storeStats: StoreStats | null;
}

export const EMPTY_SUMMARY: ArchiveSummary = {
  count: 0,
  newest: null,
  lastRuns: {},
  manualTags: [],
  damaged: [],
  historyStarted: false,
  verify: EMPTY_VERIFY_SUMMARY,
  storeStats: null,
};

export function summarize(revisions: readonly (Revision | RevisionFacts)[]): ArchiveSummary {
  const all = revisions.map((r) => ('stats' in r ? factsOf(r) : r));
  return summarizeFacts(all);
}

function summarizeFacts(
  revisions: readonly RevisionFacts[],
  damaged: string[] = [],
  historyStarted = false,
): ArchiveSummary {
  const lastRuns: Record<string, number> = {};
  const manual = new Set<string>();
  for (const rev of revisions) {
    const time = rev.time;
    for (const tag of rev.tags) {
      if (tag.startsWith(MANUAL_TAG_PREFIX)) manual.add(tag);
      if (!(tag in lastRuns) || lastRuns[tag]! < time) lastRuns[tag] = time;
    }
  }
  const last = revisions.at(-1);
  return {
    count: revisions.length,
    newest: last ?? null,
    lastRuns,
    manualTags: [...manual].sort(),
    damaged,
    historyStarted,
    verify: summarizeVerification(revisions),
    storeStats: null,
  };
}

/**
 * Caches each archive's summary and reads the revisions again only when the directory changed: every
 * revision file is written by rename, which updates the directory's mtime.
 */
export class ArchiveWatcher {
  private readonly cache = new Map<string, { mtimeMs: number; ctimeMs: number; summary: ArchiveSummary }>();

  async summary(dir: string): Promise<ArchiveSummary> {
    let info: { mtimeMs: number; ctimeMs: number };
    try {
      // Synchronous for the same reason as the revision reads: a thousand thread-pool round trips
      // cost more than the stat calls themselves.
      info = statSync(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        this.cache.delete(dir);
        return EMPTY_SUMMARY;
      }
      throw error;
    }
    const cached = this.cache.get(dir);
    if (cached != null && cached.mtimeMs === info.mtimeMs && cached.ctimeMs === info.ctimeMs)
      return cached.summary;
    const { facts, damaged, historyStarted } = await scanRevisionFacts(dir);
    // The stats file is written by rename like the revisions, so a new one is seen here too.
    const summary = { ...summarizeFacts(facts, damaged, historyStarted), storeStats: readStoreStats(dir) };
    this.cache.set(dir, { mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, summary });
    return summary;
  }

  forget(dir: string): void {
    this.cache.delete(dir);
  }
}
