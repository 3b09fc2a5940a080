import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Archive,
  type Lock,
  parseCentralConfig,
  type Revision,
  readRevisions,
  runBackup,
  verifyRevisions,
} from '@backy/core';
import { bufferSource, captureLogger, MiB, type TempDir, tempDir } from '@backy/core/testing/helpers';
import { type JobRequest, type JobRunner, type RunResult, Scheduler } from '@backy/scheduler';
import { Ajv } from 'ajv';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RevisionEntry } from './backups.js';
import { schedulerBackend } from './scheduler-backend.js';
import { ApiServer } from './server.js';

// The archives' endpoints against a real scheduler and real archives: two backups made by core in a
// temporary base-dir, changed through the API with the archive's own lock and revision writes.

const READ = 'read-token-0123456789';
const OPERATOR = 'operator-token-0123456789';
const OK: RunResult = { ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 1 };

/**
 * The scheduler's work in this process: a verify runs core's `verifyRevisions` on the archive as
 * `backy verify -r` does (the binary's own path is covered by the CLI's tests); a verify waits for
 * `gate` while a test holds it.
 */
class InProcessRunner implements JobRunner {
  gate: Promise<void> | null = null;
  backupGate: Promise<void> | null = null;
  verifies: { job: string; revision: string | undefined }[] = [];
  async verify(request: JobRequest & { outdatedAfter: number; revision?: string }): Promise<RunResult> {
    this.verifies.push({ job: request.job, revision: request.revision });
    await this.gate;
    const archive = await Archive.open(request.dir);
    const chosen = await archive.resolve(request.revision ?? 'all');
    const results = await verifyRevisions(archive, chosen, { logger: pino({ level: 'silent' }) });
    const bad = results.some((r) => !r.ok && !r.gone);
    return { ...OK, ok: !bad, exitCode: bad ? 1 : 0 };
  }
  async backup(): Promise<RunResult> {
    await this.backupGate;
    return OK;
  }
  async expire(): Promise<RunResult> {
    return OK;
  }
  async purge(): Promise<RunResult> {
    return OK;
  }
  async copy(): Promise<RunResult> {
    return OK;
  }
  async callback(): Promise<RunResult> {
    return OK;
  }
}

let dir: TempDir;
let scheduler: Scheduler;
let server: ApiServer;
let url: string;
let webDir: string;
let revs: Revision[];
const runner = new InProcessRunner();
const log = captureLogger();

const call = (path: string, token: string | undefined, method = 'GET', body?: unknown) =>
  fetch(`${url}${path}`, {
    method,
    headers: {
      ...(token == null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
const json = async <T = Record<string, unknown>>(r: Response) => (await r.json()) as T;
const putTags = (spec: string, old_tags: unknown, new_tags: unknown, token = OPERATOR) =>
  call(`/v1/backups/web1/revs/${spec}/tags`, token, 'PUT', { old_tags, new_tags });
const onDisk = async (uuid: string) => (await readRevisions(webDir)).find((r) => r.uuid === uuid)!;

beforeAll(async () => {
  dir = await tempDir('backy-api-backups-');
  const base = join(dir.path, 'base');
  webDir = join(base, 'web1');
  const archive = await Archive.init(webDir, { source: { type: 'test' } });
  const data = Buffer.alloc(2 * MiB, 7);
  data.write('the first backup', 0);
  const first = await runBackup(
    archive,
    bufferSource(() => data),
    { tags: ['daily'], logger: pino({ level: 'silent' }) },
  );
  data.write('the second backup', MiB);
  const second = await runBackup(
    archive,
    bufferSource(() => data),
    { tags: ['daily', 'weekly'], logger: pino({ level: 'silent' }) },
  );
  revs = [first, second];
  const configPath = join(dir.path, 'backy.conf');
  const central = {
    global: { 'base-dir': base, 'worker-limit': 1 },
    schedules: { s: { daily: { interval: '1d', keep: 10 }, weekly: { interval: '7d', keep: 4 } } },
    jobs: {
      web1: { schedule: 's', source: { type: 'file', filename: '/srv/web1.img' } },
      // A job that has not made its archive yet: listed with no revisions.
      db1: { schedule: 's', source: { type: 'file', filename: '/srv/db1.img' } },
    },
    api: {
      listen: '127.0.0.1:0',
      tokens: [
        { name: 'nagios', role: 'read', value: READ },
        { name: 'ops', role: 'operator', value: OPERATOR },
      ],
    },
  };
  await writeFile(configPath, JSON.stringify(central));
  scheduler = await Scheduler.start({ configPath, logger: pino({ level: 'silent' }), runner });
  const s = scheduler;
  // As the daemon wires it (packages/cli/src/commands/scheduler.ts).
  server = await ApiServer.start({
    backend: schedulerBackend(s, (path) => Archive.open(path)),
    config: parseCentralConfig(central, configPath).config.api!,
    logger: log.logger,
    version: '9.9.9',
  });
  url = server.urls[0]!;
});

afterAll(async () => {
  await server?.close();
  await scheduler?.stop();
  await dir?.cleanup();
});

describe('the archives and their revisions over HTTP', () => {
  it('lists every job with its revision count and newest revision', async () => {
    const r = await call('/v1/backups', READ);
    expect(r.status).toBe(200);
    const { backups } = await json<{
      backups: { name: string; revisions: number; newest: RevisionEntry | null }[];
    }>(r);
    expect(backups.map((b) => [b.name, b.revisions, b.newest?.uuid ?? null])).toEqual([
      ['db1', 0, null],
      ['web1', 2, revs[1]!.uuid],
    ]);
    expect(backups[1]!.newest).toEqual({
      uuid: revs[1]!.uuid,
      timestamp: new Date(revs[1]!.timestamp).toISOString(),
      tags: ['daily', 'weekly'],
      trust: 'trusted',
      parent: revs[0]!.uuid,
      size: 2 * MiB,
      bytes_written: revs[1]!.stats.bytes_written,
      duration: revs[1]!.stats.duration,
      protected: false,
    });
    expect(revs[1]!.stats.bytes_written).toBeGreaterThan(0);
  });

  it("shows an archive's revisions oldest first and one revision by the CLI's specs; 404 and 400 otherwise", async () => {
    const all = await json<{ name: string; revisions: RevisionEntry[] }>(
      await call('/v1/backups/web1', READ),
    );
    expect(all.name).toBe('web1');
    expect(all.revisions.map((r) => r.uuid)).toEqual(revs.map((r) => r.uuid));
    for (const [spec, want] of [
      ['last', 1],
      ['0', 1],
      ['1', 0],
      [revs[0]!.uuid, 0],
      [revs[0]!.uuid.slice(0, 12), 0],
      ['weekly', 1],
    ] as const) {
      const r = await call(`/v1/backups/web1/revs/${spec}`, READ);
      expect([spec, r.status, (await json<RevisionEntry>(r)).uuid]).toEqual([spec, 200, revs[want]!.uuid]);
    }
    for (const [path, status, error] of [
      ['/v1/backups/nope', 404, /unknown job "nope"/],
      ['/v1/backups/nope/revs/last', 404, /unknown job "nope"/],
      ['/v1/backups/web1/revs/7', 404, /there are only 2 revisions/],
      ['/v1/backups/db1/revs/last', 404, /the archive has no revisions/],
      ['/v1/backups/web1/revs/all', 400, /matches 2 revisions; name one/],
    ] as const) {
      const r = await call(path, READ);
      const body = await json(r);
      expect([path, r.status]).toEqual([path, status]);
      expect(Object.keys(body)).toEqual(['error']);
      expect(body.error).toMatch(error);
    }
    expect((await call('/v1/backups', undefined)).status).toBe(401);
  });

  it('protects and unprotects a revision for an operator token, as `backy protect` does', async () => {
    const uuid = revs[0]!.uuid;
    const path = `/v1/backups/web1/revs/${uuid}`;
    expect((await call(`${path}/protect`, READ, 'POST')).status).toBe(401);
    const on = await call(`${path}/protect`, OPERATOR, 'POST');
    expect(on.status).toBe(200);
    expect((await json<RevisionEntry>(on)).protected).toBe(true);
    expect((await json<RevisionEntry>(await call(path, READ))).protected).toBe(true);
    expect((await onDisk(uuid)).protected).toBe(true);
    // As the CLI's forget: core refuses to delete it now.
    const archive = await Archive.open(webDir);
    await expect(archive.deleteRevision(uuid)).rejects.toThrow(/is protected/);
    const off = await call(`${path}/unprotect`, OPERATOR, 'POST');
    expect([off.status, (await json<RevisionEntry>(off)).protected]).toEqual([200, false]);
    expect((await onDisk(uuid)).protected).toBeUndefined();
    expect((await call('/v1/backups/web1/revs/nope/protect', OPERATOR, 'POST')).status).toBe(404);
  });

  it('tells a token its name and role', async () => {
    expect(await json(await call('/v1/whoami', READ))).toEqual({ name: 'nagios', role: 'read' });
    expect(await json(await call('/v1/whoami', OPERATOR))).toEqual({ name: 'ops', role: 'operator' });
    expect((await call('/v1/whoami', 'wrong-token-0123456789')).status).toBe(401);
  });

  it('sets tags by compare-and-set: 401 for a read token, 400 for a bad body, 412 when they changed meanwhile', async () => {
    const uuid = revs[0]!.uuid;
    expect((await putTags(uuid, ['daily'], ['keep'], READ)).status).toBe(401);
    for (const body of [
      { old_tags: ['daily'] },
      { old_tags: 'daily', new_tags: ['keep'] },
      { old_tags: ['daily'], new_tags: [5] },
      { old_tags: ['daily'], new_tags: ['keep'], force: true },
    ]) {
      const r = await call(`/v1/backups/web1/revs/${uuid}/tags`, OPERATOR, 'PUT', body);
      expect([body, r.status]).toEqual([body, 400]);
      const { error, ...rest } = await json(r);
      expect(rest).toEqual({});
      expect(error).toMatch(/^body/);
    }
    const badTag = await putTags(uuid, ['daily'], ['no spaces please']);
    expect(badTag.status).toBe(400);
    expect((await json(badTag)).error).toMatch(/new_tags: invalid tag "no spaces please"/);
    expect((await onDisk(uuid)).tags).toEqual(['daily']);

    const stale = await putTags(uuid, ['weekly'], ['keep']);
    expect(stale.status).toBe(412);
    expect((await json(stale)).error).toMatch(/has tags \[daily\], not \[weekly\]/);
    expect((await onDisk(uuid)).tags).toEqual(['daily']);

    const done = await putTags(uuid, ['daily'], ['daily', 'keep']);
    expect(done.status).toBe(200);
    expect((await json<RevisionEntry>(done)).tags).toEqual(['daily', 'keep']);
    expect((await onDisk(uuid)).tags).toEqual(['daily', 'keep']);
    // The same expectation again is stale now; old_tags compare as sets.
    expect((await putTags(uuid, ['daily'], ['daily'])).status).toBe(412);
    expect((await putTags(uuid, ['keep', 'daily'], ['daily'])).status).toBe(200);
    expect((await onDisk(uuid)).tags).toEqual(['daily']);

    const logged = log.lines.filter((l) => l.msg === 'API: tags changed');
    expect(logged.map((l) => [l.token, l.revision, l.new_tags])).toEqual([
      ['ops', uuid, ['daily', 'keep']],
      ['ops', uuid, ['daily']],
    ]);
    expect(log.raw.join('')).not.toContain(OPERATOR);
  });

  it('answers 503 while a backup holds the archive, and changes nothing', async () => {
    const archive = await Archive.open(webDir);
    let lock: Lock | null = await archive.lockBackup();
    try {
      const uuid = revs[1]!.uuid;
      const tags = await putTags(uuid, ['daily', 'weekly'], ['daily']);
      expect(tags.status).toBe(503);
      expect((await json(tags)).error).toMatch(/a backup of .*web1 is already running.*try again/);
      const distrust = await call(`/v1/backups/web1/revs/${uuid}/distrust`, OPERATOR, 'POST');
      expect(distrust.status).toBe(503);
      expect(await onDisk(uuid)).toMatchObject({ tags: ['daily', 'weekly'], trust: 'trusted' });
      await lock.release();
      lock = null;
      expect((await putTags(uuid, ['daily', 'weekly'], ['daily', 'weekly', 'monthly'])).status).toBe(200);
    } finally {
      await lock?.release();
    }
  });

  it('distrusts a revision for an operator; reading it then shows it distrusted', async () => {
    const uuid = revs[0]!.uuid;
    expect((await call(`/v1/backups/web1/revs/${uuid}/distrust`, READ, 'POST')).status).toBe(401);
    const r = await call(`/v1/backups/web1/revs/${uuid}/distrust`, OPERATOR, 'POST');
    expect(r.status).toBe(200);
    expect((await json<RevisionEntry>(r)).trust).toBe('distrusted');
    expect((await json<RevisionEntry>(await call(`/v1/backups/web1/revs/${uuid}`, READ))).trust).toBe(
      'distrusted',
    );
    expect((await onDisk(uuid)).trust).toBe('distrusted');
    expect(log.lines.find((l) => l.msg === 'API: revision distrusted')).toMatchObject({
      token: 'ops',
      revision: uuid,
    });
    expect((await call('/v1/backups/web1/revs/nope/distrust', OPERATOR, 'POST')).status).toBe(404);
  });

  it("verifies a revision as the job's verify job: 202, on a worker of the limit, 409 while it runs, then the outcome in the job's status", async () => {
    const uuid = revs[0]!.uuid;
    expect((await call(`/v1/backups/web1/revs/${uuid}/verify`, READ, 'POST')).status).toBe(401);
    const gate = () => {
      let open!: () => void;
      return { promise: new Promise<void>((resolve) => (open = resolve)), open: () => open() };
    };
    const verifying = gate();
    const backingUp = gate();
    runner.gate = verifying.promise;
    runner.backupGate = backingUp.promise;
    // The only worker (worker-limit 1) runs a backup of db1: the verify waits for it.
    expect(scheduler.runJob('db1')).toBe('started');
    const r = await call(`/v1/backups/web1/revs/${uuid}/verify`, OPERATOR, 'POST');
    expect(r.status).toBe(202);
    expect(await json(r)).toEqual({ job: 'web1', revision: uuid, result: 'queued' });
    const job = () => scheduler.jobs().find((j) => j.job === 'web1')!;
    expect(job().verify_status).toBe('queued');
    expect(runner.verifies).toEqual([]);
    backingUp.open();
    for (let i = 0; i < 500 && job().verify_status !== 'running'; i++)
      await new Promise((w) => setTimeout(w, 10));
    expect(job().verify_status).toBe('running');
    expect(scheduler.summary().busyWorkers).toBe(1);
    const again = await call(`/v1/backups/web1/revs/last/verify`, OPERATOR, 'POST');
    expect(again.status).toBe(409);
    expect((await json(again)).error).toMatch(/running or waiting/);
    expect((await call(`/v1/backups/nope/revs/last/verify`, OPERATOR, 'POST')).status).toBe(404);
    verifying.open();
    for (let i = 0; i < 500 && job().verify_last_result == null; i++)
      await new Promise((w) => setTimeout(w, 10));
    expect(job()).toMatchObject({ verify_status: 'waiting', verify_last_result: 'ok' });
    expect(runner.verifies).toEqual([{ job: 'web1', revision: uuid }]);
    // The distrusted revision read back whole: verified again.
    expect((await json<RevisionEntry>(await call(`/v1/backups/web1/revs/${uuid}`, READ))).trust).toBe(
      'verified',
    );
  });

  it('answers as the schemas of GET /v1/schema say (real answers, after the runs above)', async () => {
    const { endpoints } = await json<{ endpoints: Record<string, Record<string, object>> }>(
      await call('/v1/schema', READ),
    );
    const ajv = new Ajv({
      allowUnionTypes: true,
      strict: true,
      formats: {
        'date-time': (text: string) => /^\d{4}-\d\d-\d\dT/.test(text) && !Number.isNaN(Date.parse(text)),
      },
    });
    const uuid = revs[0]!.uuid;
    const answers: [string, string, string?][] = [
      ['GET /v1/status', '/v1/status'],
      ['GET /v1/status', '/v1/status?filter=(', '400'],
      ['GET /v1/jobs', '/v1/jobs'],
      ['GET /v1/jobs/JOB', '/v1/jobs/web1'],
      ['GET /v1/jobs/JOB', '/v1/jobs/nope', '404'],
      ['GET /v1/jobs/JOB/runs', '/v1/jobs/web1/runs'],
      ['GET /v1/jobs/JOB/runs', '/v1/jobs/db1/runs'],
      ['GET /v1/backups', '/v1/backups'],
      ['GET /v1/backups/NAME', '/v1/backups/web1'],
      ['GET /v1/backups/NAME/revs/SPEC', `/v1/backups/web1/revs/${uuid}`],
      ['GET /v1/whoami', '/v1/whoami'],
    ];
    for (const [endpoint, path, status = '200'] of answers) {
      const r = await call(path, READ);
      expect([path, String(r.status)]).toEqual([path, status]);
      const schema = endpoints[endpoint]?.[status];
      expect(schema, `${endpoint} ${status}`).toBeDefined();
      const valid = ajv.validate(schema!, await r.json());
      expect([path, valid ? null : ajv.errorsText()]).toEqual([path, null]);
    }
    // The runs of web1 include the verify above: its entry's shape is checked, not only an empty list.
    const runs = await json<{ runs: { kind: string }[] }>(await call('/v1/jobs/web1/runs', READ));
    expect(runs.runs.map((r) => r.kind)).toContain('verify');
    expect(ajv.validate(endpoints['(any)']!['401']!, await (await call('/v1/jobs', undefined)).json())).toBe(
      true,
    );
  });
});
