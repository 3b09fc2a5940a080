import type { NotificationTargetConfig } from '@backy/core';
import { type NotificationInput, Notifier } from '@backy/notify';
import { describe, expect, it } from 'vitest';
import { JobNotices, outcomeNotice } from './job-notices.js';
import { type JobOutcome, NO_OUTCOME, type RunOutcome, recordOutcome } from './job-outcome.js';
import type { JobStatus } from './status-file.js';

/** The notices of a sequence of runs, as the daemon sends them. */
function noticesOf(runs: RunOutcome[], criticalFailures = 3): (string | null)[] {
  let outcome: JobOutcome = NO_OUTCOME;
  return runs.map((run, i) => {
    const next = recordOutcome(outcome, run, run === 'ok' ? null : `why ${i}`, 1000 * i);
    const notice = outcomeNotice('vm1', outcome, next, criticalFailures);
    outcome = next;
    return notice == null ? null : `${notice.event}${notice.severity != null ? ` ${notice.severity}` : ''}`;
  });
}

describe('outcomeNotice', () => {
  it('sends the first failure, again at critical-failures, then nothing until it recovers', () => {
    expect(noticesOf(['ok', 'failed', 'failed', 'failed', 'failed', 'ok', 'ok'])).toEqual([
      null,
      'job-failed',
      null,
      'job-failed critical',
      null,
      'job-recovered',
      null,
    ]);
  });

  it('tells a failed copy, a busy archive and damage apart', () => {
    expect(noticesOf(['copy-failed', 'skipped-busy', 'verification-failed', 'ok'], 2)).toEqual([
      'copy-failed',
      null,
      'verify-damage',
      'job-recovered',
    ]);
  });

  it('carries the reason, the failures in a row and the last success', () => {
    const first = recordOutcome(NO_OUTCOME, 'ok', null, 1000);
    const failed = recordOutcome(first, 'failed', 'source file /x: no such file', 2000);
    expect(outcomeNotice('vm1', first, failed)).toEqual({
      event: 'job-failed',
      job: 'vm1',
      reason: 'source file /x: no such file',
      consecutiveFailures: 1,
      lastSuccessAt: 1000,
      at: 2000,
    });
  });
});

function status(job: string, sla: 'OK' | 'TOO OLD'): JobStatus {
  return { job, sla, sla_overdue: sla === 'OK' ? 0 : 600, last_time: null } as JobStatus;
}

describe('JobNotices', () => {
  it('sends a missed SLA once when it starts, and again only after the job was back within it', () => {
    const sent: NotificationInput[] = [];
    const notices = new JobNotices(
      (targets, log) =>
        new Notifier(targets, {
          log,
          deliver: async () => ({ ok: true }),
        }),
      { info: () => {}, warn: () => {} },
    );
    const target: NotificationTargetConfig = { type: 'webhook', url: 'http://127.0.0.1:1/' };
    notices.configure([target]);
    const send = notices.send.bind(notices);
    notices.send = (input) => {
      if (input != null) sent.push(input);
      send(input);
    };
    notices.watchSla([status('a', 'TOO OLD'), status('b', 'OK')]);
    notices.watchSla([status('a', 'TOO OLD'), status('b', 'OK')]);
    notices.watchSla([status('a', 'OK'), status('b', 'TOO OLD')]);
    notices.watchSla([status('a', 'TOO OLD'), status('b', 'TOO OLD')]);
    expect(sent.map((s) => `${s.event} ${s.job}`)).toEqual(['sla-missed a', 'sla-missed b', 'sla-missed a']);
    expect(sent[0]!.reason).toBe('no backup since ever; overdue by 600 s');
  });
});
