import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { webhookReceiver } from '@backy/test-env/receivers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { BIN, backy, damageChunkOf, freePort, tempDir, until } from './helpers.js';

// End-to-end: the archives' endpoints of the real daemon (the built binary) on loopback, changing a
// real archive its first backup made.

const READ = 'monitoring-0123456789';
const OPERATOR = 'operator-0123456789';

let dir: { path: string; cleanup: () => Promise<void> };
let daemon: ChildProcess;
let exited: Promise<number | null>;
let apiPort: number;

const api = (path: string, token?: string, method = 'GET', body?: unknown) =>
  fetch(`http://127.0.0.1:${apiPort}${path}`, {
    method,
    headers: {
      ...(token == null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
const json = async (r: Response) => (await r.json()) as Record<string, unknown>;

beforeAll(async () => {
  dir = await tempDir();
  apiPort = await freePort();
});

afterAll(async () => {
  daemon?.kill('SIGTERM');
  await exited;
  await dir.cleanup();
});

describe('the archives over the daemon HTTP API', () => {
  it('tags by compare-and-set (412 on a stale expectation), distrust and verify of a revision, logged with the token name', async () => {
    const root = dir.path;
    const image = join(root, 'w.img');
    await writeFile(image, randomBytes(MiB));
    const base = join(root, 'base');
    await mkdir(base);
    const hook = await webhookReceiver();
    const conf = join(root, 'backy.conf');
    const logPath = join(root, 'daemon.log');
    await writeFile(
      conf,
      stringify({
        api: {
          listen: `127.0.0.1:${apiPort}`,
          tokens: [
            { name: 'nagios', role: 'read', value: READ },
            { name: 'ops', role: 'operator', value: OPERATOR },
          ],
        },
        notifications: [{ type: 'webhook', url: hook.url, events: ['verify-damage'] }],
        global: { 'base-dir': base, 'status-interval': 1, 'telnet-socket': false },
        schedules: { s: { daily: { interval: '1d', keep: 3 } } },
        jobs: { w: { schedule: 's', source: { type: 'file', filename: image } } },
      }),
    );
    daemon = spawn(process.execPath, [BIN, 'scheduler', '-c', conf, '-l', logPath], { stdio: 'ignore' });
    exited = new Promise((r) => daemon.once('exit', (code) => r(code)));
    try {
      const archive = join(base, 'w');
      const first = await until(
        'the first backup, listed by the API',
        async () => {
          const r = await api('/v1/backups', READ).catch(() => null);
          const backups = r?.ok
            ? ((await r.json()) as { backups: { name: string; newest: { uuid: string } | null }[] }).backups
            : [];
          return backups.find((b) => b.name === 'w')?.newest ?? null;
        },
        60_000,
      );
      const uuid = first.uuid;
      const onDisk = () => {
        const r = backy(['-b', archive, 'status', '--json']);
        return (
          JSON.parse(r.stdout) as { revisions: { uuid: string; tags: string[]; trust: string }[] }
        ).revisions.find((rev) => rev.uuid === uuid)!;
      };
      // Tags: a read token may not, a stale expectation is 412 and changes nothing, a current one is 200.
      const tags = (old_tags: string[], new_tags: string[], token = OPERATOR) =>
        api(`/v1/backups/w/revs/${uuid}/tags`, token, 'PUT', { old_tags, new_tags });
      expect((await tags(['daily'], ['keep'], READ)).status).toBe(401);
      const stale = await tags(['weekly'], ['keep']);
      expect(stale.status).toBe(412);
      expect((await json(stale)).error).toMatch(/has tags \[daily\], not \[weekly\]/);
      expect(onDisk().tags).toEqual(['daily']);
      const set = await tags(['daily'], ['daily', 'keep']);
      expect(set.status).toBe(200);
      expect((await json(set)).tags).toEqual(['daily', 'keep']);
      expect(onDisk().tags).toEqual(['daily', 'keep']);

      // Distrust: the revision's trust as `backy status` reads it.
      const distrusted = await api('/v1/backups/w/revs/last/distrust', OPERATOR, 'POST');
      expect(distrusted.status).toBe(200);
      expect((await json(distrusted)).trust).toBe('distrusted');
      expect(onDisk().trust).toBe('distrusted');

      // Verify of a damaged revision by the daemon's verify job: its outcome in the job's status, and sent.
      await damageChunkOf(archive, uuid, 0);
      const verify = await api(`/v1/backups/w/revs/${uuid}/verify`, OPERATOR, 'POST');
      expect(verify.status).toBe(202);
      expect(await json(verify)).toMatchObject({ job: 'w', revision: uuid });
      const job = await until(
        'the verify outcome in the job status',
        async () => {
          const j = await json(await api('/v1/jobs/w', READ));
          return j.verify_last_result != null ? j : null;
        },
        60_000,
      );
      expect(job).toMatchObject({ verify_last_result: 'damaged', verify_damaged: uuid });
      await until('the damage sent', () => hook.got.length > 0 || null);
      expect(hook.got[0]!.body).toMatchObject({ event: 'verify-damage', job: 'w' });

      const log = await readFile(logPath, 'utf8');
      const lines = log
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.filter((l) => l.msg === 'API: tags changed').map((l) => [l.token, l.revision])).toEqual([
        ['ops', uuid],
      ]);
      expect(lines.find((l) => l.msg === 'API: revision distrusted')).toMatchObject({
        token: 'ops',
        revision: uuid,
      });
      expect(log).not.toContain(OPERATOR);
      expect(log).not.toContain(READ);
      daemon.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      await hook.close();
    }
  }, 120_000);
});
