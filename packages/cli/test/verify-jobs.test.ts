import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { BIN, backy, damageChunkOf, freePort, oneLineError, tempDir, until } from './helpers.js';

// End-to-end: the real daemon runs a job's verify job every few seconds (`verify: {interval,
// outdated-after}`): revisions are re-read once their verification is older than outdated-after, and
// damage found that way reaches `backy check`.

interface Rev {
  uuid: string;
  trust: string;
  verified_at?: string;
}

async function revisions(dir: string): Promise<Rev[]> {
  const revs: Rev[] = [];
  for (const name of (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.rev'))) {
    const data = parse(await readFile(join(dir, name), 'utf8').catch(() => 'null'));
    if (data?.stats != null) revs.push(data);
  }
  return revs;
}

let dir: { path: string; cleanup: () => Promise<void> };
let conf: string;
let archive: string;
let daemon: ChildProcess | null = null;

beforeAll(async () => {
  dir = await tempDir();
  conf = join(dir.path, 'backy.conf');
  const base = join(dir.path, 'base');
  archive = join(base, 'v');
  await writeFile(join(dir.path, 'v.img'), randomBytes(2 * MiB));
  await writeFile(
    conf,
    stringify({
      global: {
        'base-dir': base,
        'status-interval': 1,
        'telnet-addrs': '127.0.0.1',
        'telnet-port': await freePort(),
      },
      schedules: { s: { daily: { interval: '1d', keep: 3 } } },
      jobs: {
        v: {
          schedule: 's',
          source: { type: 'file', filename: join(dir.path, 'v.img') },
          verify: { interval: '2s', 'outdated-after': '3s' },
        },
      },
    }),
  );
});

afterAll(async () => {
  if (daemon != null && daemon.exitCode == null) daemon.kill('SIGKILL');
  await dir.cleanup();
});

describe('scheduled verify jobs', () => {
  it('re-verify a revision once its verification is older than outdated-after', async () => {
    daemon = spawn(process.execPath, [BIN, 'scheduler', '-c', conf], { stdio: 'ignore' });
    const [rev] = await until(
      'the first backup',
      async () => {
        const revs = await revisions(archive);
        return revs.length === 1 ? revs : null;
      },
      60_000,
      200,
    );
    // Never verified: the verify job's first run (at its first 2 s slot) re-reads it.
    const first = await until(
      'the first verification',
      async () => {
        const [r] = await revisions(archive);
        return r?.verified_at != null ? Date.parse(r.verified_at) : null;
      },
      60_000,
      200,
    );
    expect((await revisions(archive))[0]!.trust).toBe('verified');
    // Three seconds on it is outdated, and the next run reads it again.
    const second = await until(
      'a second verification',
      async () => {
        const [r] = await revisions(archive);
        const at = r?.verified_at == null ? first : Date.parse(r.verified_at);
        return at > first ? at : null;
      },
      60_000,
      200,
    );
    expect(second - first).toBeGreaterThanOrEqual(3000);
    expect((await revisions(archive)).map((r) => r.uuid)).toEqual([rev!.uuid]);
    const log = await readFile(join(archive, 'backy.log'), 'utf8');
    expect(log).toContain('revision verified');
    const status = parse(await readFile(join(dir.path, 'base', 'status'), 'utf8'))[0];
    expect(status).toMatchObject({ job: 'v', verify_last_result: 'ok', verify_damaged: '' });
  }, 120_000);

  it('a damaged chunk found by the verify job makes check CRITICAL, naming the job and revision', async () => {
    const [rev] = await revisions(archive);
    await damageChunkOf(archive, rev!.uuid, 0);
    const r = await until(
      'a CRITICAL from check',
      () => {
        const res = backy(['check', '-c', conf]);
        return res.code === 2 ? res : null;
      },
      60_000,
      200,
    );
    expect(r.stdout.split('\n')[0]).toBe('CRITICAL: 1 jobs with revisions found damaged by verify');
    expect(r.stdout).toContain(`\nv: revision ${rev!.uuid} is damaged (found by verify)\n`);
    expect((await revisions(archive))[0]!.trust).toBe('distrusted');
    const json = JSON.parse(backy(['check', '-c', conf, '--json']).stdout);
    expect(json).toMatchObject({ status: 'CRITICAL', exitCode: 2 });
  }, 120_000);

  it('verify --outdated-after picks the revisions not verified within that time', async () => {
    daemon!.kill('SIGTERM');
    await new Promise((r) => daemon!.once('exit', r));
    const none = backy(['-b', archive, 'verify', '--outdated-after', '1h']);
    expect(none.stdout).toBe('no revisions to verify\n');
    expect(none.code).toBe(0);
    const [before] = await revisions(archive);
    await new Promise((r) => setTimeout(r, 1100));
    const again = backy(['-b', archive, 'verify', '--outdated-after', '1s']);
    expect(again.stdout).toContain(`${before!.uuid}: DAMAGED`);
    expect(again.code).toBe(1);
    const [after] = await revisions(archive);
    expect(Date.parse(after!.verified_at!)).toBeGreaterThan(Date.parse(before!.verified_at!));
    expect(oneLineError(backy(['-b', archive, 'verify', '--outdated-after', 'soon']))).toBe(
      'backy: error: --outdated-after: invalid duration "soon" (use e.g. 30m, 1h, 1d, 7w or seconds)',
    );
  }, 60_000);

  it('verify --outdated-after reads all revisions once it finds damage, so each one sharing the chunk is distrusted', async () => {
    const other = join(dir.path, 'other');
    const image = join(dir.path, 'other.img');
    await writeFile(image, randomBytes(2 * MiB));
    const b = (...args: string[]) => backy(['-b', other, ...args]);
    expect(b('init', 'file', image).code).toBe(0);
    expect(b('backup', 'daily').code).toBe(0);
    const [old] = await revisions(other);
    expect(b('verify').code).toBe(0);
    // The older revision's verification lies a day back; the newer one (same chunk) is verified now.
    const oldPath = join(other, `${old!.uuid}.rev`);
    const oldRev = parse(await readFile(oldPath, 'utf8'));
    await writeFile(
      oldPath,
      stringify({ ...oldRev, verified_at: new Date(Date.now() - 86_400_000).toISOString() }),
    );
    expect(b('backup', 'daily').code).toBe(0);
    const fresh = (await revisions(other)).find((r) => r.uuid !== old!.uuid)!;
    expect(b('verify', '-r', fresh.uuid).code).toBe(0);
    await damageChunkOf(other, old!.uuid, 0);
    const r = b('verify', '--outdated-after', '1h');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${old!.uuid}: DAMAGED`);
    expect(r.stdout).toContain(`${fresh.uuid}: DAMAGED`);
    expect((await revisions(other)).map((x) => x.trust)).toEqual(['distrusted', 'distrusted']);
  }, 60_000);
});
