import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { formatStatus, type JobStatus } from './status-file.js';

describe('status file format', () => {
  it('is YAML that reads back to exactly the entries', () => {
    const jobs: JobStatus[] = [
      {
        job: 'web01.example.com',
        sla: 'TOO OLD',
        sla_overdue: 7300,
        status: 'failed',
        last_time: '2026-01-05T10:00:00.000Z',
        last_tags: 'daily,weekly',
        last_duration: 12.5,
        next_time: null,
        next_tags: null,
        manual_tags: '',
        last_trust: 'distrusted',
        last_verification: 'failed',
      },
      {
        job: 'null',
        sla: 'OK',
        sla_overdue: 0,
        status: 'waiting',
        last_time: null,
        last_tags: 'yes',
        last_duration: null,
        next_time: '2026-01-06T10:00:00.000Z',
        next_tags: 'daily',
        manual_tags: 'manual:a, manual:"b"\\c: d #e',
        last_trust: null,
        last_verification: null,
      },
    ];
    const text = formatStatus(jobs);
    expect(parse(text)).toEqual(jobs);
    expect(text.startsWith('- job: web01.example.com\n  sla: "TOO OLD"\n  sla_overdue: 7300\n')).toBe(true);
    expect(parse(formatStatus([]))).toEqual([]);
    // As readable as the general writer's output, and the same data.
    expect(parse(stringify(jobs))).toEqual(parse(text));
  });

  it("keeps a running job's progress and the newest revision's work as values, not as text", () => {
    const job: JobStatus = {
      job: 'vm',
      sla: 'OK',
      sla_overdue: 0,
      status: 'waiting',
      last_time: '2026-01-05T10:00:00.000Z',
      last_tags: 'daily',
      last_duration: 3.2,
      next_time: null,
      next_tags: null,
      manual_tags: '',
      last_trust: 'trusted',
      last_verification: 'ok',
      verify_status: 'running',
      progress: { phase: 'verify', done: 1024, total: 4096, rate: 512, eta_seconds: null },
      revisions: 2,
      last_bytes_read: 16777216,
      last_bytes_written: 4194328,
      last_chunks_written: 1,
      last_chunks_reused: 2,
    };
    expect(parse(formatStatus([job]))).toEqual([job]);
  });
});
