import { mkdtemp, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkStatusFile, evaluateStatus } from './check.js';
import type { JobStatus } from './status-file.js';

const job = (name: string, extra: Partial<JobStatus> = {}): JobStatus => ({
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
const NOW = Date.UTC(2026, 0, 5, 12);

describe('backy check', () => {
  it('is OK when every job is within SLA', () => {
    expect(evaluateStatus('/s', { jobs: [job('a'), job('b')], mtimeMs: NOW - 1000 }, NOW)).toEqual({
      exitCode: 0,
      lines: ['OK: 2 jobs within SLA'],
    });
  });

  it('is CRITICAL with one line per late job', () => {
    const result = evaluateStatus(
      '/s',
      {
        jobs: [
          job('a'),
          job('b', { sla: 'TOO OLD', sla_overdue: 3600 }),
          job('c', { sla: 'TOO OLD', last_time: null }),
        ],
        mtimeMs: NOW,
      },
      NOW,
    );
    expect(result).toEqual({
      exitCode: 2,
      lines: [
        'CRITICAL: 2 jobs not within SLA',
        'b (last time: 2026-01-05 10:00:00 UTC), overdue by 3600s',
        'c (last time: never)',
      ],
    });
  });

  it('is CRITICAL when the status file is older than 5 minutes', () => {
    expect(evaluateStatus('/s', { jobs: [job('a')], mtimeMs: NOW - 301_000 }, NOW)).toEqual({
      exitCode: 2,
      lines: ['CRITICAL: Status file is older than 5 minutes'],
    });
  });

  it('is UNKNOWN without a status file, or with garbage in it', async () => {
    expect(evaluateStatus('/x/status', null, NOW)).toEqual({
      exitCode: 3,
      lines: ['UNKNOWN: No status file found at /x/status'],
    });
    const dir = await mkdtemp(join(tmpdir(), 'backy-check-'));
    expect((await checkStatusFile(join(dir, 'status'))).lines).toEqual([
      `UNKNOWN: No status file found at ${join(dir, 'status')}`,
    ]);
    await writeFile(join(dir, 'status'), 'just: a map\n');
    const garbage = await checkStatusFile(join(dir, 'status'));
    expect(garbage.exitCode).toBe(3);
    expect(garbage.lines[0]).toMatch(/^UNKNOWN: Status file .* is unreadable: not a list of jobs$/);
  });

  it('WARNs about distrusted or failed-verification newest revisions', () => {
    const result = evaluateStatus(
      '/s',
      {
        jobs: [job('a', { last_trust: 'distrusted' }), job('b', { last_verification: 'failed' }), job('c')],
        mtimeMs: NOW,
      },
      NOW,
    );
    expect(result).toEqual({
      exitCode: 1,
      lines: [
        'WARNING: 2 jobs with a distrusted or unverified newest revision',
        'a: newest revision is distrusted (2026-01-05T10:00:00.000Z)',
        'b: newest revision failed verification (2026-01-05T10:00:00.000Z)',
      ],
    });
  });

  it('reads a real file and its age', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-check-'));
    const path = join(dir, 'status');
    await writeFile(path, '- job: a\n  sla: OK\n  sla_overdue: 0\n');
    expect((await checkStatusFile(path)).lines).toEqual(['OK: 1 jobs within SLA']);
    const old = new Date(Date.now() - 10 * 60_000);
    await utimes(path, old, old);
    expect((await checkStatusFile(path)).exitCode).toBe(2);
  });
});

describe('a job whose history is gone', () => {
  const NOW = Date.parse('2026-01-05T12:00:00Z');
  it('is CRITICAL once it has had revisions, OK before its first backup', () => {
    const never = job('new', { last_time: null, last_tags: null, history_lost: false });
    const lost = job('web01', { last_time: null, last_tags: null, history_lost: true });
    expect(evaluateStatus('/s', { jobs: [never], mtimeMs: NOW - 1000 }, NOW).exitCode).toBe(0);
    expect(evaluateStatus('/s', { jobs: [never, lost], mtimeMs: NOW - 1000 }, NOW)).toEqual({
      exitCode: 2,
      lines: ['CRITICAL: 1 jobs lost their history', 'web01: no revisions left, although it has had some'],
    });
  });

  it('the status file says so: the archive records its first revision, and forgetting all leaves that', async () => {
    const { ArchiveWatcher } = await import('./archive-state.js');
    const dir = await mkdtemp(join(tmpdir(), 'backy-history-'));
    const watcher = new ArchiveWatcher();
    expect((await watcher.summary(dir)).historyStarted).toBe(false);
    await writeFile(join(dir, 'history-started'), 'first revision x\n');
    expect(await watcher.summary(dir)).toMatchObject({ count: 0, historyStarted: true });
  });
});

describe('an unreadable status file', () => {
  it('says what is wrong with its YAML in words', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-status-'));
    const path = join(dir, 'status');
    await writeFile(path, '- job: a\n   sla: OK\n  bad: [\n');
    const result = await checkStatusFile(path);
    expect(result.exitCode).toBe(3);
    expect(result.lines[0]).toMatch(
      new RegExp(`^UNKNOWN: Status file ${path} is unreadable: not valid YAML: \\w+`),
    );
    expect(result.lines[0]).not.toMatch(/BAD_INDENT|[A-Z]+_[A-Z]+/);
  });
});
