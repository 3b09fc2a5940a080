import { mkdtemp, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkJobs, checkStatusFile, evaluateStatus } from './check.js';
import type { JobStatus } from './status-file.js';
import { jobStatus } from './test-helpers.js';

const job = jobStatus;
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
    await writeFile(path, '- job: a\n  sla: OK\n  sla_overdue: 0\n  last_time: "2026-01-05T10:00:00.000Z"\n');
    expect((await checkStatusFile(path)).lines).toEqual(['OK: 1 jobs within SLA']);
    const old = new Date(Date.now() - 10 * 60_000);
    await utimes(path, old, old);
    expect((await checkStatusFile(path)).exitCode).toBe(2);
  });
});

describe('a job whose history is gone', () => {
  const NOW = Date.parse('2026-01-05T12:00:00Z');
  it('is CRITICAL once it has had revisions, a WARNING before its first backup', () => {
    const never = job('new', { last_time: null, last_tags: null, history_lost: false, status: 'running' });
    const lost = job('web01', { last_time: null, last_tags: null, history_lost: true });
    expect(evaluateStatus('/s', { jobs: [never], mtimeMs: NOW - 1000 }, NOW)).toEqual({
      exitCode: 1,
      lines: [
        'WARNING: 1 jobs without a successful backup yet',
        'new: no successful backup yet (status: running)',
      ],
    });
    expect(evaluateStatus('/s', { jobs: [never, lost], mtimeMs: NOW - 1000 }, NOW)).toEqual({
      exitCode: 2,
      lines: [
        'CRITICAL: 1 jobs lost their history',
        'web01: no revisions left, although it has had some',
        'new: no successful backup yet (status: running)',
      ],
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

describe('failed runs and the config', () => {
  const failed = (name: string, count: number, extra: Partial<JobStatus> = {}) =>
    job(name, {
      status: 'failed',
      last_outcome: 'failed',
      last_reason: `source /img/${name}: not found`,
      consecutive_failures: count,
      last_success: '2026-01-05T10:00:03.000Z',
      ...extra,
    });

  it('WARNs about a job whose last run failed, naming it and the reason, though within SLA', () => {
    const result = evaluateStatus('/s', { jobs: [job('a'), failed('b', 1)], mtimeMs: NOW }, NOW);
    expect(result).toEqual({
      exitCode: 1,
      lines: ['WARNING: 1 jobs whose last run failed', 'b: backup failed: source /img/b: not found'],
    });
  });

  it('is CRITICAL after critical-failures failed runs in a row (default 3)', () => {
    const jobs = [failed('a', 2), failed('b', 3, { last_outcome: 'verification-failed', last_reason: 'x' })];
    expect(evaluateStatus('/s', { jobs, mtimeMs: NOW }, NOW)).toEqual({
      exitCode: 2,
      lines: [
        'CRITICAL: 1 jobs failed 3 or more times in a row',
        'b: backup failed verification (3 times in a row): x',
        'a: backup failed (2 times in a row): source /img/a: not found',
      ],
    });
    const two = evaluateStatus('/s', { jobs, mtimeMs: NOW }, NOW, { criticalFailures: 2 });
    expect(two.exitCode).toBe(2);
    expect(two.lines[0]).toBe('CRITICAL: 2 jobs failed 2 or more times in a row');
    // Once fixed (an ok run), the job is OK again.
    const fixed = job('a', { last_outcome: 'ok', last_reason: null, consecutive_failures: 0 });
    expect(evaluateStatus('/s', { jobs: [fixed], mtimeMs: NOW }, NOW, { criticalFailures: 2 }).exitCode).toBe(
      0,
    );
  });

  it('WARNs about a failed copy-to and about failures hidden behind a busy archive', () => {
    const copy = failed('a', 1, { last_outcome: 'copy-failed', last_reason: '/mnt/offsite/a: unreachable' });
    const busy = failed('b', 2, {
      last_outcome: 'skipped-busy',
      last_reason: 'another backup holds the archive',
    });
    expect(evaluateStatus('/s', { jobs: [copy, busy], mtimeMs: NOW }, NOW)).toEqual({
      exitCode: 1,
      lines: [
        'WARNING: 2 jobs whose last run failed',
        'a: copy failed: /mnt/offsite/a: unreachable',
        'b: last run skipped after 2 failed runs: another backup holds the archive',
      ],
    });
    // A busy archive alone is no failure.
    const onlyBusy = job('c', { last_outcome: 'skipped-busy', consecutive_failures: 0 });
    expect(evaluateStatus('/s', { jobs: [onlyBusy], mtimeMs: NOW }, NOW).exitCode).toBe(0);
  });

  it('is CRITICAL for a configured job missing from the status file, and for an empty one', () => {
    const options = { configuredJobs: ['a', 'b'], configPath: '/etc/backy.conf' };
    expect(evaluateStatus('/s', { jobs: [job('a')], mtimeMs: NOW }, NOW, options)).toEqual({
      exitCode: 2,
      lines: [
        'CRITICAL: 1 jobs missing from the status file',
        'b: configured in /etc/backy.conf but not in the status file: the scheduler has not loaded it (reload or start it)',
      ],
    });
    const empty = evaluateStatus('/s', { jobs: [], mtimeMs: NOW }, NOW, options);
    expect(empty.exitCode).toBe(2);
    expect(empty.lines[0]).toBe('CRITICAL: 2 jobs missing from the status file');
    expect(evaluateStatus('/s', { jobs: [], mtimeMs: NOW }, NOW, { configuredJobs: [] })).toEqual({
      exitCode: 0,
      lines: ['OK: 0 jobs within SLA'],
    });
    // One the config no longer has: the daemon has not reloaded.
    expect(
      evaluateStatus('/s', { jobs: [job('a'), job('b'), job('old')], mtimeMs: NOW }, NOW, options),
    ).toEqual({
      exitCode: 1,
      lines: [
        'WARNING: 1 jobs not in the config',
        'old: in the status file but not in /etc/backy.conf: the scheduler has not reloaded it',
      ],
    });
  });

  it('judges the jobs the HTTP API reports by the same rules, the verify findings included', () => {
    const jobs = [
      job('a', { last_outcome: 'failed', last_reason: 'source gone', consecutive_failures: 1 }),
      job('b', { verify_damaged: 'rev1' }),
    ];
    // A status file's age does not apply: the API answers from the running daemon.
    expect(checkJobs(jobs, NOW, { configuredJobs: ['a', 'b', 'c'], configPath: '/etc/backy.conf' })).toEqual({
      exitCode: 2,
      lines: [
        'CRITICAL: 1 jobs missing from the status file',
        'c: configured in /etc/backy.conf but not in the status file: the scheduler has not loaded it (reload or start it)',
        'a: backup failed: source gone',
        'b: revision rev1 is damaged (found by verify)',
      ],
    });
    expect(checkJobs([job('a')], NOW)).toEqual({ exitCode: 0, lines: ['OK: 1 jobs within SLA'] });
  });
});

describe('fleet mode', () => {
  it('WARNs once when this server cannot reach Consul, and about jobs no live server may run', () => {
    const problem =
      'Consul has no cluster leader (PUT http://127.0.0.1:8500/v1/session/renew: 500 No cluster leader)';
    const result = checkJobs([
      jobStatus('vm1', {
        fleet_state: 'outage',
        fleet_owner: 'a',
        fleet_server: 'a',
        fleet_problem: problem,
      }),
      jobStatus('vm2', {
        fleet_state: 'outage',
        fleet_owner: 'b',
        fleet_server: 'b',
        fleet_problem: problem,
      }),
      jobStatus('vm3', { fleet_state: 'unassigned', fleet_owner: null, fleet_server: 'c' }),
    ]);
    expect(result.exitCode).toBe(1);
    expect(result.lines).toEqual([
      'WARNING: fleet: Consul out of reach, no job starts on this server; 1 jobs unassigned in the fleet',
      `fleet: ${problem}`,
      'vm3: no live fleet server has the labels this job needs',
    ]);
  });

  it('is OK for jobs other servers run', () => {
    const rows = ['a', 'b'].map((s, i) =>
      jobStatus(`vm${i}`, { fleet_state: 'assigned', fleet_owner: s, fleet_server: s }),
    );
    expect(checkJobs(rows).exitCode).toBe(0);
  });
});
