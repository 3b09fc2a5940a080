import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isComplete, MANUAL_TAG_PREFIX, type Revision, readRevisionFile } from '@backy/core';

/** What the scheduler needs to know about a job's revisions. */
export interface ArchiveSummary {
  /** Complete revisions. */
  count: number;
  newest: {
    uuid: string;
    time: number;
    tags: string[];
    /** Seconds the backup took. */
    duration: number;
    trust: Revision['trust'];
    /** `ok`, `failed`, or null when the source did not verify it. */
    verification: 'ok' | 'failed' | null;
  } | null;
  /** Start time (ms) of the newest complete revision carrying each tag. */
  lastRuns: Record<string, number>;
  /** `manual:` tags found on any revision. */
  manualTags: string[];
}

export const EMPTY_SUMMARY: ArchiveSummary = { count: 0, newest: null, lastRuns: {}, manualTags: [] };

/** Complete revisions of an archive directory, oldest first; a missing directory has none. */
export async function readRevisions(dir: string): Promise<Revision[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const revisions: Revision[] = [];
  for (const name of names) {
    if (!name.endsWith('.rev') || name.startsWith('.')) continue;
    try {
      const data = await readRevisionFile(join(dir, name));
      if (isComplete(data) && `${data.uuid}.rev` === name) revisions.push(data);
    } catch {
      // Unreadable or half-written revisions are the CLI's business (`backy status` reports them).
    }
  }
  return revisions.sort(
    (a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || a.uuid.localeCompare(b.uuid),
  );
}

export function summarize(revisions: readonly Revision[]): ArchiveSummary {
  const lastRuns: Record<string, number> = {};
  const manual = new Set<string>();
  for (const rev of revisions) {
    const time = Date.parse(rev.timestamp);
    for (const tag of rev.tags) {
      if (tag.startsWith(MANUAL_TAG_PREFIX)) manual.add(tag);
      if (!(tag in lastRuns) || lastRuns[tag]! < time) lastRuns[tag] = time;
    }
  }
  const last = revisions.at(-1);
  return {
    count: revisions.length,
    newest:
      last == null
        ? null
        : {
            uuid: last.uuid,
            time: Date.parse(last.timestamp),
            tags: last.tags,
            duration: last.stats.duration,
            trust: last.trust,
            verification:
              last.verification == null || last.verification.method === 'none'
                ? null
                : last.verification.ok
                  ? 'ok'
                  : 'failed',
          },
    lastRuns,
    manualTags: [...manual].sort(),
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
      info = await stat(dir);
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
    const summary = summarize(await readRevisions(dir));
    this.cache.set(dir, { mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, summary });
    return summary;
  }

  forget(dir: string): void {
    this.cache.delete(dir);
  }
}
