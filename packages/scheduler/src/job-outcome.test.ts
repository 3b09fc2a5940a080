import { describe, expect, it } from 'vitest';
import {
  NO_OUTCOME,
  outcomeFromStatus,
  outcomeStatusFields,
  RECENT_RUNS,
  type RunRecord,
  reasonOf,
  recordOutcome,
  withRun,
} from './job-outcome.js';
import type { RunResult } from './runner.js';

const result = (extra: Partial<RunResult>): RunResult => ({
  ok: false,
  exitCode: 1,
  signal: null,
  stderr: '',
  durationMs: 1,
  ...extra,
});

describe('recordOutcome', () => {
  it('counts failures in a row until a success; a busy archive neither counts nor resets', () => {
    let o = recordOutcome(NO_OUTCOME, 'failed', 'no source', 1000);
    o = recordOutcome(o, 'skipped-busy', 'busy', 2000);
    o = recordOutcome(o, 'verification-failed', 'mismatch', 3000);
    expect(o).toEqual({
      lastOutcome: 'verification-failed',
      reason: 'mismatch',
      lastRunAt: 3000,
      consecutiveFailures: 2,
      lastSuccessAt: null,
    });
    // A failed copy: the backup was made (a success), the run still failed.
    o = recordOutcome(o, 'copy-failed', 'offsite down', 4000);
    expect(o).toMatchObject({ consecutiveFailures: 3, lastSuccessAt: 4000 });
    o = recordOutcome(o, 'ok', 'ignored', 5000);
    expect(o).toEqual({
      lastOutcome: 'ok',
      reason: null,
      lastRunAt: 5000,
      consecutiveFailures: 0,
      lastSuccessAt: 5000,
    });
  });

  it('survives a round trip through the status file; junk reads as unknown', () => {
    const o = recordOutcome(recordOutcome(NO_OUTCOME, 'ok', null, 1000), 'failed', 'why', 2000);
    expect(outcomeFromStatus(outcomeStatusFields(o))).toEqual(o);
    expect(
      outcomeFromStatus({ last_outcome: 'exploded', consecutive_failures: -3, last_success: 'yesterday' }),
    ).toEqual(NO_OUTCOME);
  });
});

describe('reasonOf', () => {
  it("takes the CLI's error line, else the last stderr line, else the exit status or signal", () => {
    expect(reasonOf(result({ stderr: 'backy: error: source /x: not found\nsome trailing noise\n' }))).toBe(
      'source /x: not found',
    );
    expect(reasonOf(result({ stderr: 'backy: internal error: boom\n' }))).toBe('internal error: boom');
    expect(reasonOf(result({ stderr: 'Killed\n' }))).toBe('Killed');
    expect(reasonOf(result({ exitCode: 7 }))).toBe('exit status 7');
    expect(reasonOf(result({ exitCode: null, signal: 'SIGKILL' }))).toBe('terminated by SIGKILL');
    const long = reasonOf(result({ stderr: `backy: error: ${'x'.repeat(1000)}\u0007` }));
    expect(long.length).toBe(300);
    expect(long.endsWith('…')).toBe(true);
  });
});

describe('withRun', () => {
  it('keeps the newest RECENT_RUNS runs, newest first', () => {
    let runs: RunRecord[] = [];
    for (let i = 0; i < RECENT_RUNS + 5; i++)
      runs = withRun(runs, {
        kind: 'backup',
        started: i,
        ended: i + 1,
        outcome: 'ok',
        reason: null,
        tags: [],
      });
    expect(runs).toHaveLength(RECENT_RUNS);
    expect(runs[0]!.started).toBe(RECENT_RUNS + 4);
    expect(runs.at(-1)!.started).toBe(5);
  });
});
