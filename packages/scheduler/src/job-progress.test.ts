import { describe, expect, it } from 'vitest';
import { nextProgress, progressStatus } from './job-progress.js';

const MiB = 1024 * 1024;

describe('a running job’s progress', () => {
  it('has the rate of its current phase and a time left once the rate has settled', () => {
    let p = nextProgress(null, { phase: 'backup', done: 0, total: 64 * MiB }, 10_000);
    p = nextProgress(p, { phase: 'backup', done: 4 * MiB, total: 64 * MiB }, 11_000);
    expect(progressStatus(p, 11_000)).toEqual({
      phase: 'backup',
      done: 4 * MiB,
      total: 64 * MiB,
      rate: 4 * MiB,
      eta_seconds: null,
    });
    p = nextProgress(p, { phase: 'backup', done: 16 * MiB, total: 64 * MiB }, 14_000);
    expect(progressStatus(p, 14_000)).toMatchObject({ rate: 4 * MiB, eta_seconds: 12 });
    // A new phase starts its own clock: its rate is not diluted by the backup's time.
    p = nextProgress(p, { phase: 'verify', done: 3 * MiB, total: 4 * MiB }, 16_000);
    expect(progressStatus(p, 16_000)).toMatchObject({
      phase: 'verify',
      rate: 3 * MiB * 1000,
      eta_seconds: null,
    });
    expect(progressStatus(p, 18_000)).toMatchObject({ rate: 1.5 * MiB, eta_seconds: 1 });
    // No total: no time left.
    p = nextProgress(p, { phase: 'diff', done: 8 * MiB, total: 0 }, 20_000);
    expect(progressStatus(p, 24_000)).toMatchObject({ eta_seconds: null, rate: 2 * MiB });
  });
});
