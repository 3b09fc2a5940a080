import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  newRevisionId,
  parseRevisionFacts,
  quickRevisionFacts,
  type RevisionData,
  readRevisionFacts,
  revisionSchema,
  writeRevisionFile,
} from '@backy/core';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ArchiveWatcher } from './archive-state.js';

/** What the facts must be: the YAML parser plus the schema, the slow and sure way. */
function expected(text: string) {
  const result = revisionSchema.safeParse(parse(text));
  if (!result.success || result.data.stats == null) return null;
  const r = result.data;
  return {
    uuid: r.uuid,
    time: Date.parse(r.timestamp),
    tags: r.tags,
    duration: r.stats!.duration,
    trust: r.trust,
    verification:
      r.verification == null || r.verification.method === 'none' ? null : r.verification.ok ? 'ok' : 'failed',
    snapshot: ['agent', 'direct'].includes(r.source_info?.snapshot_method as string)
      ? (r.source_info!.snapshot_method as 'agent' | 'direct')
      : null,
    verifiedAt:
      r.verified_at != null && Number.isFinite(Date.parse(r.verified_at)) ? Date.parse(r.verified_at) : null,
    work: {
      bytesRead: r.stats!.bytes_read,
      bytesWritten: r.stats!.bytes_written,
      chunksWritten: r.stats!.chunks_written,
      chunksReused: r.stats!.chunks_reused,
    },
  };
}

let seed = 42;
const rand = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

function randomRevision(): RevisionData {
  const rev: RevisionData = {
    uuid: newRevisionId(),
    timestamp: new Date(1_700_000_000_000 + Math.floor(rand() * 1e11)).toISOString(),
    parent: rand() < 0.3 ? null : newRevisionId(),
    tags: Array.from({ length: Math.floor(rand() * 4) }, () =>
      rand() < 0.8
        ? pick(['daily', 'weekly', 'hourly', 'manual:before-upgrade'])
        : pick([
            'manual:x y',
            '0x10',
            '123',
            '1e3',
            'a#b',
            'yes',
            'null',
            'ok:',
            'a: b',
            '-x',
            "it's",
            '"q"',
          ]),
    ),
    trust: pick(['trusted', 'distrusted', 'verified'] as const),
    size: Math.floor(rand() * 1e12),
    backend_type: 'chunked',
  };
  if (rand() < 0.4)
    rev.verified_at = pick([new Date(1_700_000_000_000 + Math.floor(rand() * 1e11)).toISOString(), 'never']);
  if (rand() < 0.5) rev.source_type = pick(['file', 'ceph-rbd', 'flyingcircus']);
  if (rand() < 0.85) {
    rev.stats = {
      bytes_written: Math.floor(rand() * 1e9),
      bytes_read: Math.floor(rand() * 1e9),
      duration: pick([0, 0.027, 12.5, 3600, 1e-7, Math.floor(rand() * 1e5) / 7]),
      chunks_written: 1,
      chunks_reused: 2,
      chunks_zero: 3,
    };
  }
  if (rand() < 0.6) {
    rev.verification = {
      method: pick(['full', 'partial', 'none'] as const),
      chunks_checked: 5,
      chunks_total: 9,
      ok: rand() < 0.7,
      mismatches: rand() < 0.5 ? [] : [1, 17, 4096],
      timestamp: new Date().toISOString(),
    };
  }
  if (rand() < 0.3)
    rev.source_info = {
      snapshot: 'backy-abc',
      ...(rand() < 0.7 ? { snapshot_method: pick(['agent', 'direct', 'other']) } : {}),
      nested: { list: [1, 'two', { three: 3 }], 'odd key': 'x: y' },
    };
  return rev;
}

/** A random revision that is complete (it has stats). */
function completeRevision(): RevisionData {
  const rev = randomRevision();
  rev.stats ??= {
    bytes_written: 1,
    bytes_read: 1,
    duration: 2,
    chunks_written: 1,
    chunks_reused: 0,
    chunks_zero: 0,
  };
  return rev;
}

describe('revision facts', () => {
  it('match the YAML parser and the schema for a thousand random revisions', () => {
    let fast = 0;
    for (let i = 0; i < 1000; i++) {
      const text = stringify(randomRevision(), { sortMapEntries: false });
      expect(parseRevisionFacts(text), text).toEqual(expected(text));
      if (quickRevisionFacts(text) !== undefined) fast++;
    }
    // Most of them take the fast path.
    expect(fast).toBeGreaterThan(500);
  });

  it('take the fast path for what core writes, and fall back for anything unusual', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-facts-'));
    const rev = completeRevision();
    rev.tags = ['daily', 'weekly'];
    await writeRevisionFile(join(dir, `${rev.uuid}.rev`), rev);
    const text = await readFile(join(dir, `${rev.uuid}.rev`), 'utf8');
    expect(quickRevisionFacts(text)).toEqual(expected(text));
    const odd = [
      JSON.stringify(rev),
      `%YAML 1.2\n---\n${text}`,
      text.replace('tags:\n  - daily\n  - weekly', 'tags: [daily, weekly]'),
      text.replace(/^uuid: (.*)$/m, 'uuid: &a $1'),
      `${text}# a comment\n`,
      text.replace(/\n/g, '\r\n'),
    ];
    for (const t of odd)
      expect(parseRevisionFacts(t), t).toEqual(expected(t.replace(/\r\n/g, '\n')) ?? expected(t));
    expect(parseRevisionFacts('uuid: x\ntimestamp: 2026-01-01T00:00:00Z\n')).toBeNull();
    expect(parseRevisionFacts(': : :\n\t- [')).toBeNull();
  });

  it('reads an archive directory, skipping incomplete and misnamed revisions, and caches it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-facts-'));
    const complete = completeRevision();
    complete.timestamp = '2026-01-01T00:00:00.000Z';
    complete.tags = ['daily', 'manual:keep'];
    const incomplete = { ...randomRevision(), stats: undefined };
    await writeRevisionFile(join(dir, `${complete.uuid}.rev`), complete);
    await writeRevisionFile(join(dir, `${incomplete.uuid}.rev`), incomplete);
    await writeFile(join(dir, 'wrongname.rev'), stringify(complete));
    await writeFile(join(dir, 'garbage.rev'), '\u0000\u0001');
    const facts = await readRevisionFacts(dir);
    expect(facts.map((f) => f.uuid)).toEqual([complete.uuid]);
    const watcher = new ArchiveWatcher();
    const summary = await watcher.summary(dir);
    expect(summary).toMatchObject({
      count: 1,
      lastRuns: { daily: Date.parse(complete.timestamp) },
      manualTags: ['manual:keep'],
    });
    expect(await watcher.summary(dir)).toBe(summary);
    expect(await watcher.summary(join(dir, 'missing'))).toMatchObject({ count: 0, newest: null });
  });
});
