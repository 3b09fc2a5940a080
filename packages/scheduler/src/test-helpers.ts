// What the scheduler's tests share: the daemon on a fake clock, the revisions a fake runner writes, and
// the rows of a status file.
import { join } from 'node:path';
import { newRevisionId, writeRevisionFile } from '@backy/core';
import type { Clock } from './clock.js';
import type { JobStatus } from './status-file.js';

/** The fake clock's start: a Monday, midnight UTC. */
export const T0 = Date.UTC(2026, 0, 5);

/** A clock whose time moves only when a test fires its next timer or sets `time`. */
export class FakeClock implements Clock {
  time = T0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;
  now() {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(handle: unknown) {
    this.timers.delete(handle as number);
  }
  /** Jumps to the earliest timer and fires it; returns false when none is left before `limit`. */
  fireNext(limit: number): boolean {
    let best: [number, { at: number; fn: () => void }] | null = null;
    for (const entry of this.timers) if (best == null || entry[1].at < best[1].at) best = entry;
    if (best == null || best[1].at > limit) return false;
    this.timers.delete(best[0]);
    this.time = Math.max(this.time, best[1].at);
    best[1].fn();
    return true;
  }
}

/** Waits in real time, the fake clock standing still, until `condition` holds; fails naming `what`. */
export async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    await new Promise((r) => setImmediate(r));
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`${what} did not happen`);
}

/** Writes a trusted, empty revision into `dir` stamped `at`, as a backup at that time would. */
export async function writeStampedRevision(dir: string, at: number, tags: string[]): Promise<void> {
  const uuid = newRevisionId();
  await writeRevisionFile(join(dir, `${uuid}.rev`), {
    uuid,
    timestamp: new Date(at).toISOString(),
    parent: null,
    tags,
    trust: 'trusted',
    size: 0,
    backend_type: 'chunked',
    stats: {
      bytes_written: 0,
      bytes_read: 0,
      duration: 60,
      chunks_written: 0,
      chunks_reused: 0,
      chunks_zero: 0,
    },
  });
}

/** A status-file row of a job that is within its SLA, with `extra` over it. */
export const jobStatus = (name: string, extra: Partial<JobStatus> = {}): JobStatus => ({
  job: name,
  sla: 'OK',
  sla_overdue: 0,
  status: 'waiting',
  last_time: '2026-01-05T10:00:00.000Z',
  last_tags: 'daily',
  last_duration: 3,
  next_time: '2026-01-06T10:00:00.000Z',
  next_tags: 'daily',
  manual_tags: '',
  last_trust: 'trusted',
  last_verification: 'ok',
  ...extra,
});
