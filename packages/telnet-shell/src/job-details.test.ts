import { describe, expect, it } from 'vitest';
import { jobDetailLines } from './job-details.js';

const GiB = 1024 ** 3;

describe('the lines below the jobs table', () => {
  it('say why a run failed and how far a running backup is', () => {
    expect(
      jobDetailLines([
        { job: 'db1', last_outcome: 'failed', last_reason: 'source file /x: no such file' },
        {
          job: 'web1',
          last_outcome: 'ok',
          last_reason: null,
          progress: {
            phase: 'backup',
            done: 1.2 * GiB,
            total: 2.6 * GiB,
            rate: 80 * 1024 ** 2,
            eta_seconds: 17,
          },
        },
        {
          job: 'rbd1',
          last_outcome: null,
          last_reason: null,
          progress: { phase: 'diff', done: 512, total: 0, rate: 0, eta_seconds: null },
        },
        { job: 'idle', last_outcome: 'ok', last_reason: null },
      ]),
    ).toEqual([
      'db1: failed: source file /x: no such file',
      'web1: backup 46% 1.2 GiB / 2.6 GiB, 80.0 MiB/s, 17s left',
      'rbd1: diff 512 B, 0 B/s',
    ]);
  });
});
