import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCentralConfig } from '@backy/core';
import type { JobStatus, SchedulerSummary } from '@backy/scheduler';
import { metricValue, parseMetrics } from '@backy/test-env/prometheus';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiBackend, ApiServer } from './server.js';

const READ = 'read-token-0123456789';
const OPERATOR = 'operator-token-0123456789';

function job(name: string, fields: Partial<JobStatus> = {}): JobStatus {
  return {
    job: name,
    sla: 'OK',
    sla_overdue: 0,
    status: 'waiting',
    last_time: '2026-12-05T02:00:00.000Z',
    last_tags: 'daily',
    last_duration: 12.5,
    next_time: null,
    next_tags: null,
    manual_tags: '',
    last_trust: 'trusted',
    last_verification: null,
    last_outcome: 'ok',
    last_reason: null,
    last_run: '2026-12-05T02:00:12.000Z',
    consecutive_failures: 0,
    last_success: '2026-12-05T02:00:12.000Z',
    ...fields,
  };
}

/** The scheduler's view, as the daemon hands it to the API: two jobs, one failing. */
const runs: string[] = [];
const backend: ApiBackend = {
  jobs: (filter) =>
    [
      job('db1', {
        last_outcome: 'failed',
        last_reason: 'source file /srv/db1.img: no such file',
        consecutive_failures: 2,
        sla: 'TOO OLD',
        sla_overdue: 3600,
      }),
      job('web1', {
        status: 'running',
        progress: { phase: 'backup', done: 1024, total: 4096, rate: 512, eta_seconds: 6 },
      }),
    ].filter((j) => filter == null || filter.test(j.job)),
  summary: (): SchedulerSummary => ({
    jobs: 2,
    states: { waiting: 1, queued: 0, running: 1, finishing: 0, failed: 0 } as SchedulerSummary['states'],
    workerLimit: 2,
    busyWorkers: 1,
    idleWorkers: 1,
    stores: [],
  }),
  runJob: (name) => {
    runs.push(name);
    return name === 'web1' ? 'already running' : name === 'db1' ? 'started' : 'unknown job';
  },
  reload: async () => ({ ok: true, added: [], removed: [], changed: [] }),
  runs: (name) => (name === 'web1' ? [] : null),
  // The archives' routes have their own tests, with a real scheduler and archives (backups.test.ts).
  archives: () => [],
  openArchive: () => Promise.reject(new Error('no archives here')),
  verifyRevision: () => 'unknown job',
};

let dir: string;
let server: ApiServer;
let url: string;
const get = (path: string, token?: string, method = 'GET') =>
  fetch(`${url}${path}`, { method, headers: token == null ? {} : { authorization: `Bearer ${token}` } });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backy-api-'));
  await writeFile(join(dir, 'operator'), `${OPERATOR}\n`, { mode: 0o600 });
  const { config } = parseCentralConfig(
    {
      api: {
        listen: '127.0.0.1:0',
        tokens: [
          { name: 'nagios', role: 'read', value: READ },
          { name: 'ops', role: 'operator', file: join(dir, 'operator') },
        ],
      },
    },
    'backy.conf',
  );
  // A deprecation warning lands on the daemon's stderr, beside its log: starting gives none.
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  try {
    server = await ApiServer.start({
      backend,
      config: config.api!,
      logger: pino({ level: 'silent' }),
      version: '9.9.9',
    });
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('warning', onWarning);
  }
  url = server.urls[0]!;
});

const warnings: string[] = [];

it('starts without a warning from its libraries', () => {
  expect(warnings).toEqual([]);
});

afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the HTTP API', () => {
  it('answers 401 and nothing else without a token, with a wrong one, and to a read token calling run', async () => {
    for (const [path, token, method] of [
      ['/v1/status', undefined, 'GET'],
      ['/v1/status', 'wrong-token-0123456789', 'GET'],
      ['/metrics', `${READ}x`, 'GET'],
      ['/v1/nothing-here', undefined, 'GET'],
      ['/v1/jobs/db1/run', READ, 'POST'],
      ['/v1/reload', READ, 'POST'],
    ] as const) {
      const r = await get(path, token, method);
      expect([path, token, r.status]).toEqual([path, token, 401]);
      expect(r.headers.get('www-authenticate')).toBe('Bearer realm="backy"');
      const body = (await r.json()) as { error: string };
      expect(Object.keys(body)).toEqual(['error']);
    }
    expect(runs).toEqual([]);
  });

  it('shows the status, filtered by a regular expression, with a failing job and its reason', async () => {
    const r = await get('/v1/status?filter=^db', READ);
    expect(r.status).toBe(200);
    const body = (await r.json()) as { version: string; jobs: JobStatus[]; summary: SchedulerSummary };
    expect(body.version).toBe('9.9.9');
    expect(body.jobs.map((j) => [j.job, j.last_outcome, j.last_reason])).toEqual([
      ['db1', 'failed', 'source file /srv/db1.img: no such file'],
    ]);
    expect(body.summary.busyWorkers).toBe(1);
    expect((await get('/v1/status?filter=(', READ)).status).toBe(400);
    expect((await get('/v1/jobs/nope', READ)).status).toBe(404);
    expect(((await (await get('/v1/jobs/web1', READ)).json()) as JobStatus).status).toBe('running');
  });

  it('runs a job for an operator token: 202, 409 when it runs already, 404 for an unknown one', async () => {
    expect((await get('/v1/jobs/db1/run', OPERATOR, 'POST')).status).toBe(202);
    expect((await get('/v1/jobs/web1/run', OPERATOR, 'POST')).status).toBe(409);
    expect((await get('/v1/jobs/nope/run', OPERATOR, 'POST')).status).toBe(404);
    expect(runs).toEqual(['db1', 'web1', 'nope']);
    expect(await (await get('/v1/reload', OPERATOR, 'POST')).json()).toEqual({
      ok: true,
      added: [],
      removed: [],
      changed: [],
    });
  });

  it('serves Prometheus metrics that a text-format parser reads, with the documented names and values', async () => {
    const r = await get('/metrics', READ);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parseMetrics(await r.text());
    const value = (name: string, labels: Record<string, string> = {}) => metricValue(families, name, labels);
    expect(value('backy_job_consecutive_failures', { job: 'db1' })).toBe('2');
    expect(value('backy_job_sla_overdue_seconds', { job: 'db1' })).toBe('3600');
    expect(value('backy_job_last_run_outcome', { job: 'db1', outcome: 'failed' })).toBe('1');
    expect(value('backy_job_running', { job: 'web1' })).toBe('1');
    expect(value('backy_job_last_success_timestamp_seconds', { job: 'web1' })).toBe(
      String(Date.parse('2026-12-05T02:00:12.000Z') / 1000),
    );
    expect(value('backy_job_last_backup_duration_seconds', { job: 'web1' })).toBe('12.5');
    expect(value('backy_job_progress_done_bytes', { job: 'web1' })).toBe('1024');
    expect(value('backy_job_progress_total_bytes', { job: 'web1' })).toBe('4096');
    expect(value('backy_job_progress_eta_seconds', { job: 'web1' })).toBe('6');
    expect(value('backy_job_progress_done_bytes', { job: 'db1' })).toBeUndefined();
    expect(value('backy_scheduler_workers_busy')).toBe('1');
    expect(value('backy_scheduler_jobs', { state: 'running' })).toBe('1');
    expect(value('backy_build_info', { version: '9.9.9' })).toBe('1');
    expect(value('process_cpu_seconds_total')).toBeDefined();
  });

  it('refuses a token file other users can read, naming the key', async () => {
    const file = join(dir, 'open');
    await writeFile(file, `${OPERATOR}\n`);
    await chmod(file, 0o644);
    const { config } = parseCentralConfig(
      { api: { listen: 0, tokens: [{ name: 'x', role: 'read', file }] } },
      'backy.conf',
    );
    await expect(
      ApiServer.start({ backend, config: config.api!, logger: pino({ level: 'silent' }), version: '0' }),
    ).rejects.toThrow(`api.tokens.0.file ${file} is accessible to other users (mode 644); chmod o-rwx it`);
  });

  it('says which config key is wrong', () => {
    const parse = (api: unknown) => () => parseCentralConfig({ api }, 'backy.conf');
    expect(parse({ listen: 'nowhere', tokens: [{ name: 'a', role: 'read', value: READ }] })).toThrow(
      /api\.listen: expected HOST:PORT/,
    );
    expect(parse({ listen: 6080, tokens: [{ name: 'a', role: 'root', value: READ }] })).toThrow(
      /api\.tokens\.0\.role/,
    );
    expect(parse({ listen: 6080, tokens: [{ name: 'a', role: 'read', value: 'short' }] })).toThrow(
      /api\.tokens\.0\.value: tokens must be at least 16 characters long/,
    );
  });
});
