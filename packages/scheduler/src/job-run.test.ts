import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCentralConfig } from '@backy/core';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from './clock.js';
import { planJob } from './job-plan.js';
import { BUSY_RETRY_MS, runJobOnce } from './job-run.js';
import { JobTable } from './job-table.js';
import type { JobRunner, RunResult } from './runner.js';

let base: string | null = null;
afterEach(async () => {
  if (base != null) await rm(base, { recursive: true, force: true });
});

describe('runJobOnce', () => {
  it('an archive busy with another backup (exit 69) is no failure: info log, no back-off, no expire', async () => {
    base = await mkdtemp(join(tmpdir(), 'backy-jobrun-'));
    const table = new JobTable({ log: pino({ level: 'silent' }), slowThresholdSeconds: 600 });
    table.apply(
      parseCentralConfig(
        {
          global: { 'base-dir': base },
          schedules: { s: { daily: { interval: '1d', keep: 7 } } },
          jobs: { a: { schedule: 's', source: { type: 'file', filename: '/a' } } },
        },
        'test.conf',
      ),
    );
    const job = table.get('a')!;
    const busy: RunResult = { ok: false, exitCode: 69, signal: null, stderr: 'locked', durationMs: 1 };
    const calls: string[] = [];
    const step = (op: string) => async () => {
      calls.push(op);
      return busy;
    };
    const runner: JobRunner = {
      backup: step('backup'),
      expire: step('expire'),
      purge: step('purge'),
      copy: step('copy'),
      callback: step('callback'),
    };
    const lines: { level: number; msg: string }[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const now = systemClock.now();
    await runJobOnce(job, {
      runner,
      clock: systemClock,
      log,
      stopSignal: new AbortController().signal,
      callbackProgram: () => undefined,
      copyTarget: () => null,
      callbackTimeoutMs: 1000,
    });
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
});
