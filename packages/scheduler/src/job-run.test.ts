import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCentralConfig } from '@backy/core';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from './clock.js';
import type { JobClaim } from './fleet-gate.js';
import { planJob } from './job-plan.js';
import { BUSY_RETRY_MS, EXIT_SUPERSEDED, runJobOnce } from './job-run.js';
import { JobTable } from './job-table.js';
import type { BackupRequest, RunResult } from './runner.js';
import { writeStampedRevision } from './test-helpers.js';

let base: string | null = null;
afterEach(async () => {
  if (base != null) await rm(base, { recursive: true, force: true });
  base = null;
});

const OK: RunResult = { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };

/**
 * One run of job `a` (daily) through runJobOnce, with `backup` answering the backup and every other step
 * succeeding; `store`: the central config's `global.store`, `fleet`: the job's fleet lock.
 */
async function runOnce(
  backup: (request: BackupRequest) => Promise<RunResult>,
  options: { store?: Record<string, unknown>; fleet?: JobClaim } = {},
) {
  if (base != null) await rm(base, { recursive: true, force: true });
  base = await mkdtemp(join(tmpdir(), 'backy-jobrun-'));
  const table = new JobTable({ log: pino({ level: 'silent' }), slowThresholdSeconds: 600 });
  const global = { 'base-dir': base, ...(options.store != null ? { store: options.store } : {}) };
  table.apply(
    parseCentralConfig(
      {
        global,
        schedules: { s: { daily: { interval: '1d', keep: 7 } } },
        jobs: { a: { schedule: 's', source: { type: 'file', filename: '/a' } } },
      },
      'test.conf',
    ),
  );
  const job = table.get('a')!;
  const calls: string[] = [];
  const step = (op: string) => async () => {
    calls.push(op);
    return OK;
  };
  const lines: { level: number; msg: string }[] = [];
  await runJobOnce(job, {
    runner: {
      backup: async (request) => {
        calls.push('backup');
        return backup(request);
      },
      expire: step('expire'),
      purge: step('purge'),
      copy: step('copy'),
      callback: step('callback'),
    },
    clock: systemClock,
    log: pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) }),
    stopSignal: new AbortController().signal,
    callbackProgram: () => undefined,
    copyTarget: () => null,
    callbackTimeoutMs: 1000,
    ...(options.fleet != null ? { fleet: options.fleet } : {}),
  });
  return { job, calls, lines, messages: lines.map((l) => l.msg) };
}

describe('runJobOnce', () => {
  it('an archive busy with another backup (exit 69) is no failure: info log, no back-off, no expire', async () => {
    const now = systemClock.now();
    const { job, calls, lines } = await runOnce(async () => ({
      ...OK,
      ok: false,
      exitCode: 69,
      stderr: 'locked',
    }));
    expect(calls).toEqual(['backup']);
    expect(job.failures).toBe(0);
    expect(lines.map((l) => [l.level, l.msg])).toContainEqual([
      30,
      'the archive is busy with another backup; trying again when it has ended',
    ]);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    // Due again shortly, not after the failure back-off (120 s, doubling).
    const plan = planJob(job, now)!;
    expect(plan.time - now).toBeGreaterThan(BUSY_RETRY_MS - 1000);
    expect(plan.time - now).toBeLessThanOrEqual(BUSY_RETRY_MS + 1000);
  });

  describe('fleet mode: a slot another server made meanwhile (`backup --if-newest`, exit 75)', () => {
    const fleet: JobClaim = { token: 7, lost: new AbortController().signal, release: async () => {} };
    const superseded: RunResult = {
      ok: false,
      exitCode: EXIT_SUPERSEDED,
      signal: null,
      stderr: 'backy: error: … another server backed the archive up meanwhile, so this backup did nothing',
      durationMs: 1,
    };

    it('passes the fence, the newest revision it knows (none) and --attach; a revision pulled in meanwhile is no failure and no run of its own', async () => {
      let request: BackupRequest | null = null;
      const { job, calls, lines, messages } = await runOnce(
        async (r) => {
          request = r;
          // What the CLI does before it exits 75: the store's revision is pulled into the directory.
          await mkdir(r.dir, { recursive: true });
          await writeStampedRevision(r.dir, Date.now(), ['daily']);
          return superseded;
        },
        { fleet },
      );
      expect(request).toMatchObject({ fence: 7, ifNewest: 'none', attach: true, tags: ['daily'] });
      expect(calls).toEqual(['backup']);
      expect(job.failures).toBe(0);
      expect(job.outcome.lastOutcome).toBeNull();
      expect(job.runs).toEqual([]);
      expect(job.state).toBe('waiting');
      expect(messages).toContain('another fleet server backed the job up meanwhile; nothing to do');
      expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    });

    it('exit 75 while the directory still shows the revision it passed is a failure (no endless retry)', async () => {
      const { job, calls } = await runOnce(async () => superseded, { fleet });
      expect(calls).toEqual(['backup']);
      expect(job.failures).toBe(1);
      expect(job.outcome.lastOutcome).toBe('failed');
      expect(job.outcome.reason).toMatch(/another server backed the archive up meanwhile/);
    });
  });

  it('an append-only store without admin credentials: expire and purge are not run (they could only fail), with one info line', async () => {
    const s3 = { type: 's3', endpoint: 'http://127.0.0.1:7480', bucket: 'b', 'append-only': true };
    const skipped = await runOnce(async () => OK, { store: s3 });
    expect(skipped.calls).toEqual(['backup']);
    expect(skipped.messages).toContain(
      'expire and purge skipped: the store is append-only and no admin credentials are configured',
    );
    const admin = await runOnce(async () => OK, { store: { ...s3, 'admin-profile': 'admin' } });
    expect(admin.calls).toEqual(['backup', 'expire', 'purge']);
    const plain = await runOnce(async () => OK, { store: { ...s3, 'append-only': false } });
    expect(plain.calls).toEqual(['backup', 'expire', 'purge']);
  });
});
