import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { backy, damageChunkOf, type Result, tempDir } from './helpers.js';

// The shapes are documented in docs/json.md: a field renamed here must be renamed there.
const MiB = 1024 * 1024;
let dir: { path: string; cleanup: () => Promise<void> };
let arch: string;
let image: string;
let data: Buffer;
const b = (...args: string[]) => backy(['-b', arch, ...args]);

/** stdout is exactly one JSON document (JSON.parse refuses anything before or after it). */
// biome-ignore lint/suspicious/noExplicitAny: the tests read fields of parsed JSON
function json(r: Result, code = 0): Record<string, any> {
  expect(r.code, r.stderr).toBe(code);
  return JSON.parse(r.stdout);
}

beforeAll(async () => {
  dir = await tempDir();
  arch = join(dir.path, 'archive');
  image = join(dir.path, 'disk.img');
  data = Buffer.concat([randomBytes(8 * MiB), Buffer.alloc(1 * MiB)]);
  await writeFile(image, data);
  expect(b('init', 'file', image).code).toBe(0);
});
afterAll(() => dir.cleanup());

describe('--json: one documented JSON document on stdout per command', () => {
  let first: string;
  let second: string;

  it('backup: the new revision with its stats', async () => {
    const out = json(b('backup', '--json', 'daily'));
    expect(Object.keys(out)).toEqual(['revision']);
    const rev = out.revision;
    expect(rev.uuid).toMatch(/^[A-Za-z0-9]{10,}$/);
    expect(rev.tags).toEqual(['daily']);
    expect(rev.size).toBe(data.length);
    expect(rev.trust).toBe('trusted');
    expect(typeof rev.timestamp).toBe('string');
    expect(rev.stats).toMatchObject({ chunksWritten: 2, chunksZero: 1, chunksReused: 0 });
    expect(rev.stats.bytesWritten).toBeGreaterThan(0);
    expect(typeof rev.stats.duration).toBe('number');
    first = rev.uuid;
    // What status --json lists is the same object.
    const listed = json(b('status', '--json')).revisions as { uuid: string }[];
    expect(listed.map((r) => r.uuid)).toEqual([first]);
    randomBytes(1000).copy(data, 5 * MiB);
    await writeFile(image, data);
    second = json(b('backup', '--json', 'daily')).revision.uuid;
    expect(second).not.toBe(first);
  });

  it('restore: the revision, its size, the target and its kind', async () => {
    const target = join(dir.path, 'restored.img');
    const r = b('restore', '--json', target);
    const out = json(r);
    expect(out).toEqual({ revision: second, size: data.length, target, kind: 'file' });
    expect(r.stderr).toBe('');
    expect((await readFile(target)).equals(data)).toBe(true);
    // With `-` stdout carries the image: no room for JSON.
    const both = b('restore', '--json', '-');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--json needs a TARGET file');
  });

  it('verify: per revision its result and the damaged offsets', async () => {
    const good = json(b('verify', '--json'));
    expect(good.revisions).toEqual([
      { uuid: first, result: 'verified', damaged: [], problem: null },
      { uuid: second, result: 'verified', damaged: [], problem: null },
    ]);
    const hash = await damageChunkOf(arch, second, 1);
    const bad = json(b('verify', '--json', '-r', second), 1);
    expect(bad.revisions).toHaveLength(1);
    expect(bad.revisions[0]).toMatchObject({ uuid: second, result: 'damaged', problem: null });
    expect(bad.revisions[0].damaged).toEqual([
      { offset: 4 * MiB, index: 1, hash, reason: expect.stringContaining('damaged') },
    ]);
  });

  it('expire: per revision whether it goes and which tags expire', () => {
    const none = json(b('expire', '--json', '--dry-run'));
    expect(none).toEqual({ dryRun: true, revisions: [] });
    expect(b('tags', 'set', '-r', first, '').code).toBe(0);
    const planned = json(b('expire', '--json', '--dry-run'));
    expect(planned).toEqual({ dryRun: true, revisions: [{ uuid: first, removed: true, expiredTags: [] }] });
    const done = json(b('expire', '--json'));
    expect(done).toEqual({ dryRun: false, revisions: [{ uuid: first, removed: true, expiredTags: [] }] });
  });

  it('forget: the revisions forgotten (or that would be)', () => {
    const dry = json(b('forget', '--json', '--dry-run', '-r', second));
    expect(dry.dryRun).toBe(true);
    expect(dry.revisions).toEqual([
      { uuid: second, timestamp: expect.any(String), tags: ['daily'], result: 'would be forgotten' },
    ]);
    const done = json(b('forget', '--json', '-r', second));
    expect(done).toMatchObject({ dryRun: false, revisions: [{ uuid: second, result: 'forgotten' }] });
    expect(json(b('status', '--json'))).toEqual({ version: 1, revisions: [] });
  });

  it('purge: what it deleted, and with --dry-run what it would', () => {
    const dry = json(b('purge', '--json', '--dry-run'));
    expect(dry).toMatchObject({ dryRun: true, chunksKept: 0, archives: 1, staleEntries: [] });
    // Chunk 0 and the first revision's chunk 1; the second's chunk 1 was moved aside by verify as damaged.
    expect(dry.chunksDeleted).toBe(2);
    expect(dry.wouldDelete.filter((e: { kind: string }) => e.kind === 'damaged')).toHaveLength(1);
    expect(dry.wouldDelete.length).toBeGreaterThanOrEqual(dry.chunksDeleted);
    expect(dry.wouldDelete.filter((e: { kind: string }) => e.kind === 'chunk')).toHaveLength(
      dry.chunksDeleted,
    );
    for (const entry of dry.wouldDelete) {
      expect(['chunk', 'damaged', 'temporary']).toContain(entry.kind);
      expect(typeof entry.path).toBe('string');
      expect(typeof entry.bytes).toBe('number');
    }
    const done = json(b('purge', '--json'));
    expect(done).toMatchObject({
      dryRun: false,
      chunksDeleted: dry.chunksDeleted,
      bytesFreed: dry.bytesFreed,
    });
    expect(done).not.toHaveProperty('wouldDelete');
  });

  it('check: the Nagios state, its summary line and details', async () => {
    const missing = json(backy(['check', '--json', '-c', join(dir.path, 'no-such.conf')]), 3);
    expect(missing).toMatchObject({ status: 'UNKNOWN', exitCode: 3, details: [], statusFile: null });
    expect(missing.summary).toMatch(/^UNKNOWN: /);
    const conf = join(dir.path, 'backy.conf');
    await writeFile(
      conf,
      stringify({
        global: { 'base-dir': join(dir.path, 'base') },
        schedules: { s: { daily: { interval: '1d', keep: 3 } } },
        jobs: { vm: { schedule: 's', source: { type: 'file', filename: image } } },
      }),
    );
    const noStatus = json(backy(['check', '--json', '-c', conf]), 3);
    expect(noStatus.status).toBe('UNKNOWN');
    expect(noStatus.statusFile).toEqual(expect.stringContaining(join(dir.path, 'base')));
    expect(noStatus.summary).toContain('No status file');
    // Without --json the same answer as the Nagios line.
    expect(backy(['check', '-c', conf]).stdout).toBe(`${noStatus.summary}\n`);
  });
});
