import { describe, expect, it } from 'vitest';
import type { ObjectLock } from '../backend/contract.js';
import type { RevisionData } from '../revision.js';
import { ChunkMap } from '../store/chunk-map.js';
import type { ChunkStore } from '../store/contract.js';
import { isRetained, keepHorizon, retainChunks, retainedParent, retainUntilOf } from './object-lock.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const schedule = { daily: { interval: 86_400, keep: 9 }, weekly: { interval: 7 * 86_400, keep: 5 } };
const lock: ObjectLock = { mode: 'compliance', marginMs: DAY, stepMs: 7 * DAY, manualMs: 30 * DAY };

const hash = (n: number) => n.toString(16).padStart(64, '0');

function mapOf(...hashes: number[]): ChunkMap {
  const map = new ChunkMap(hashes.length * 4 * 1024 * 1024);
  for (const [i, h] of hashes.entries()) map.set(i, hash(h));
  return map;
}

/** A store that only answers `retain`, recording each call (the repository's is tested on RGW). */
function retainingStore(absent: Set<string> = new Set()) {
  const calls: Array<[string, number]> = [];
  const store = {
    root: 'test-store',
    retain: async (h: string, until: number) => {
      calls.push([h, until]);
      return absent.has(h) ? null : until;
    },
  } as unknown as ChunkStore;
  return { store, calls };
}

describe('how long Object Lock retains a revision', () => {
  it('is the longest that a tag of the schedule can keep it: keep × interval', () => {
    expect(keepHorizon(['daily'], schedule, undefined)).toBe(9 * DAY);
    expect(keepHorizon(['daily', 'weekly'], schedule, undefined)).toBe(35 * DAY);
  });

  it('is unbounded (null) for a manual tag, a keep-0 tag, an unknown tag or no tags', () => {
    expect(keepHorizon(['daily', 'manual:x'], schedule, undefined)).toBeNull();
    expect(keepHorizon(['forever'], { forever: { interval: 86_400, keep: 0 } }, undefined)).toBeNull();
    expect(keepHorizon(['other'], schedule, undefined)).toBeNull();
    expect(keepHorizon([], schedule, undefined)).toBeNull();
  });

  it('under calendar retention is N + 1 periods of the longest rule, and at least keep-within', () => {
    expect(keepHorizon(['daily'], schedule, { 'keep-daily': 7, 'keep-weekly': 4 })).toBe(5 * 7 * DAY);
    expect(keepHorizon([], schedule, { 'keep-yearly': 2 })).toBe(3 * 366 * DAY);
    expect(keepHorizon([], schedule, { 'keep-hourly': 24, 'keep-within': 30 * 86_400 })).toBe(30 * DAY);
  });

  it('adds the margin to the timestamp, takes `manual` when no rule removes it, and a given date as a floor', () => {
    const rev = { timestamp: '2026-12-01T00:00:00.000Z', tags: ['daily'] };
    const t = Date.parse(rev.timestamp);
    expect(retainUntilOf(rev, lock, schedule, undefined)).toBe(t + 9 * DAY + DAY);
    expect(retainUntilOf({ ...rev, tags: ['manual:x'] }, lock, schedule, undefined)).toBe(t + 31 * DAY);
    const given = { mode: 'compliance' as const, until: '2027-06-01T00:00:00.000Z', chunks_until: '' };
    expect(retainUntilOf({ ...rev, retention: given }, lock, schedule, undefined)).toBe(
      Date.parse(given.until),
    );
    // A given date earlier than the rules' is no reason to retain it less.
    const early = { ...given, until: '2026-12-02T00:00:00.000Z' };
    expect(retainUntilOf({ ...rev, retention: early }, lock, schedule, undefined)).toBe(t + 10 * DAY);
  });

  it('retains until its date, and no longer', () => {
    const rev = {
      retention: { mode: 'governance' as const, until: '2026-12-10T00:00:00.000Z', chunks_until: '' },
    };
    expect(isRetained(rev, Date.parse('2026-12-09T23:59:59Z'))).toBe(true);
    expect(isRetained(rev, Date.parse('2026-12-10T00:00:00Z'))).toBe(false);
    expect(isRetained({}, 0)).toBe(false);
  });
});

describe('retaining the chunks of a revision before it commits', () => {
  const until = Date.parse('2026-12-11T12:00:00.000Z');
  const stepEnd = Math.ceil(until / lock.stepMs) * lock.stepMs;

  it('extends every distinct chunk to the end of the step when there is no parent', async () => {
    const { store, calls } = retainingStore();
    const record = await retainChunks(store, lock, mapOf(1, 2, 2, 3), until, null);
    expect(calls.map(([h]) => h).sort()).toEqual([hash(1), hash(2), hash(3)]);
    expect(calls.every(([, u]) => u === stepEnd)).toBe(true);
    expect(record).toEqual({
      mode: 'compliance',
      until: new Date(until).toISOString(),
      chunks_until: new Date(stepEnd).toISOString(),
      chunks_extended: 3,
    });
  });

  it("needs no request for chunks the parent holds retained long enough, and records the parent's end for them", async () => {
    const parentUntil = stepEnd - DAY;
    const parent: RevisionData = {
      uuid: 'p',
      timestamp: '2026-12-01T00:00:00.000Z',
      parent: null,
      tags: [],
      trust: 'trusted',
      size: 0,
      backend_type: 'chunked',
      retention: { mode: 'compliance', until: '', chunks_until: new Date(parentUntil).toISOString() },
    };
    const hint = retainedParent({ revision: parent, map: mapOf(1, 2) });
    const { store, calls } = retainingStore();
    const record = await retainChunks(store, lock, mapOf(1, 2, 4), until, hint);
    expect(calls.map(([h]) => h)).toEqual([hash(4)]);
    expect(record.chunks_extended).toBe(1);
    expect(record.chunks_until).toBe(new Date(parentUntil).toISOString());
  });

  it("extends the parent's chunks too once the revision reaches past them", async () => {
    const parent = {
      revision: {
        retention: { mode: 'compliance', until: '', chunks_until: new Date(until - HOUR).toISOString() },
      } as RevisionData,
      map: mapOf(1, 2),
    };
    const { store, calls } = retainingStore();
    await retainChunks(store, lock, mapOf(1, 2), until, retainedParent(parent));
    expect(calls).toHaveLength(2);
  });

  it('fails (and so the commit does) when a chunk is gone', async () => {
    const { store } = retainingStore(new Set([hash(2)]));
    await expect(retainChunks(store, lock, mapOf(1, 2), until, null)).rejects.toThrow(
      `chunk ${hash(2)} is missing from test-store: cannot retain it`,
    );
  });
});
