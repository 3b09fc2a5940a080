import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { BIN, backy, freePort, oneLineError, type Result, tempDir, until } from './helpers.js';

// End-to-end: `backy check`, `backy jobs` and `backy run` as clients of the real daemon's HTTP API on
// loopback, over HTTP and over HTTPS with a self-signed certificate made here.

const READ = 'monitoring-0123456789';
const OPERATOR = 'operator-0123456789abc';

interface Daemon {
  child: ChildProcess;
  exit: Promise<number | null>;
}

function startDaemon(conf: string): Daemon {
  const child = spawn(process.execPath, [BIN, 'scheduler', '-c', conf], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.resume();
  return { child, exit: new Promise((r) => child.once('exit', (code) => r(code))) };
}

async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode == null) d.child.kill('SIGTERM');
  await d.exit;
}

let dir: { path: string; cleanup: () => Promise<void> };
const daemons: Daemon[] = [];

beforeAll(async () => {
  dir = await tempDir();
});

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode == null) d.child.kill('SIGKILL');
  await dir.cleanup();
});

/** A central config with jobs `a` and `f` (file sources) and the API on a free loopback port. */
async function writeConfig(
  root: string,
  api: Record<string, unknown>,
): Promise<{ conf: string; images: Record<string, string> }> {
  await mkdir(root, { recursive: true });
  const images = { a: join(root, 'a.img'), f: join(root, 'f.img') };
  for (const image of Object.values(images)) await writeFile(image, randomBytes(MiB));
  const conf = join(root, 'backy.conf');
  await writeFile(
    conf,
    stringify({
      api,
      global: { 'base-dir': join(root, 'base'), 'status-interval': 1, 'telnet-port': await freePort() },
      schedules: { s: { daily: { interval: '1d', keep: 3 } } },
      jobs: Object.fromEntries(
        Object.entries(images).map(([job, filename]) => [
          job,
          { schedule: 's', source: { type: 'file', filename } },
        ]),
      ),
    }),
  );
  return { conf, images };
}

describe('check, jobs and run through the HTTP API', () => {
  it('check OK then WARNING for a failing job, jobs shows why, run starts it; errors are one line; CRITICAL once the daemon is gone', async () => {
    const root = join(dir.path, 'http');
    await mkdir(root, { recursive: true });
    // The read token is in a file only this user may read: check and jobs find it in the config.
    const tokenFile = join(root, 'read.token');
    await writeFile(tokenFile, `${READ}\n`, { mode: 0o600 });
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const { conf, images } = await writeConfig(root, {
      listen: `127.0.0.1:${port}`,
      tokens: [
        { name: 'nagios', role: 'read', file: tokenFile },
        { name: 'ops', role: 'operator', value: OPERATOR },
      ],
    });
    const d = startDaemon(conf);
    daemons.push(d);
    try {
      const ok = await until(
        'an OK through the API',
        () => {
          const r = backy(['check', '-c', conf]);
          return r.code === 0 ? r : null;
        },
        90_000,
      );
      expect(ok.stdout).toBe('OK: 2 jobs within SLA\n');
      expect(JSON.parse(backy(['check', '-c', conf, '--json']).stdout)).toMatchObject({
        status: 'OK',
        api: url,
        statusFile: null,
      });

      // f's source goes away; `backy run f` (an operator token from the config) starts it now.
      await rm(images.f);
      const ran = backy(['run', 'f', '-c', conf]);
      expect(ran).toMatchObject({ code: 0, stdout: 'f: started\n', stderr: '' });
      const warning = await until('a WARNING naming f', () => {
        const r = backy(['check', '-c', conf]);
        return r.code === 1 ? r : null;
      });
      expect(warning.stdout.split('\n')).toEqual([
        'WARNING: 1 jobs whose last run failed',
        `f: backup failed: source file ${images.f}: no such file`,
        '',
      ]);

      const jobs = backy(['jobs', '-c', conf]);
      expect(jobs.code).toBe(0);
      const lines = jobs.stdout.trimEnd().split('\n');
      expect(lines[1]).toMatch(/^│ Job +│ State +│ Last Run +│ Reason +│ SLA +│ Next Backup \(UTC\) +│$/);
      expect(lines.find((l) => l.startsWith('│ a '))).toMatch(
        /^│ a +│ waiting +│ ok +│ - +│ OK +│ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d daily +│$/,
      );
      expect(lines.find((l) => l.startsWith('│ f '))).toMatch(
        new RegExp(`^│ f +│ failed +│ failed +│ source file ${images.f}: no such file +│ OK +│`),
      );
      expect(lines.at(-1)).toBe('2 jobs shown');
      // The filter is the API's (RE2); a bad one is a one-line usage error.
      expect(backy(['jobs', '^a$', '-c', conf]).stdout.trimEnd().split('\n').at(-1)).toBe('1 jobs shown');
      const badRegex = backy(['jobs', '(', '-c', conf]);
      expect(badRegex.code).toBe(2);
      expect(oneLineError(badRegex)).toMatch(
        /^backy: error: jobs: invalid regular expression "\(": 400 filter: /,
      );

      // An unknown job, a read token calling run, a wrong token: one line each, non-zero, nothing runs.
      const unknown = backy(['run', 'nope', '-c', conf]);
      expect(unknown.code).toBe(2);
      expect(oneLineError(unknown)).toBe('backy: error: run: unknown job "nope"');
      const readOnly = backy(['run', 'a', '-c', conf, '--token-file', tokenFile]);
      expect(readOnly.code).toBe(1);
      expect(oneLineError(readOnly)).toBe(
        `backy: error: the daemon's HTTP API at ${url} refused the token of --token-file ${tokenFile}: 401 token nagios (role read) may not do this: it needs role operator`,
      );
      const wrong = backy(['jobs', '-c', conf], { env: { BACKY_API_TOKEN: 'wrong-token-0123456789' } });
      expect(wrong.code).toBe(1);
      expect(oneLineError(wrong)).toBe(
        `backy: error: the daemon's HTTP API at ${url} refused the token of $BACKY_API_TOKEN: 401 unauthorized`,
      );
      // check with a refused token cannot judge: UNKNOWN, on stdout as Nagios reads it.
      expect(
        backy(['check', '-c', conf], { env: { BACKY_API_TOKEN: 'wrong-token-0123456789' } }),
      ).toMatchObject({
        code: 3,
        stdout: `UNKNOWN: the daemon's HTTP API at ${url} refused the token of $BACKY_API_TOKEN: 401 unauthorized\n`,
      });

      d.child.kill('SIGTERM');
      expect(await d.exit).toBe(0);
      // The status file is fresh still, but the daemon is gone: the API's silence is what counts.
      const down = backy(['check', '-c', conf]);
      expect(down).toMatchObject({
        code: 2,
        stdout: `CRITICAL: the daemon's HTTP API at ${url} does not answer: ECONNREFUSED\n`,
      });
      const jobsDown = backy(['jobs', '-c', conf]);
      expect(jobsDown.code).toBe(1);
      expect(oneLineError(jobsDown)).toBe(
        `backy: error: the daemon's HTTP API at ${url} does not answer: ECONNREFUSED`,
      );
    } finally {
      await stopDaemon(d);
    }
  }, 180_000);

  it('over HTTPS with a self-signed certificate: check and jobs verify it; plain HTTP and another certificate fail', async () => {
    const root = join(dir.path, 'https');
    await mkdir(root, { recursive: true });
    const certificate = (name: string) => {
      const cert = join(root, `${name}.crt`);
      const key = join(root, `${name}.key`);
      const r = spawnSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          key,
          '-out',
          cert,
          '-days',
          '1',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
        ],
        { encoding: 'utf8' },
      );
      if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
      return { cert, key };
    };
    const tls = certificate('api');
    await chmod(tls.key, 0o600);
    const port = await freePort();
    const api = {
      listen: `127.0.0.1:${port}`,
      tls,
      tokens: [{ name: 'nagios', role: 'read', value: READ }],
    };
    const { conf } = await writeConfig(root, api);
    const d = startDaemon(conf);
    daemons.push(d);
    try {
      const ok: Result = await until(
        'an OK over HTTPS',
        () => {
          const r = backy(['check', '-c', conf]);
          return r.code === 0 ? r : null;
        },
        90_000,
      );
      expect(ok.stdout).toBe('OK: 2 jobs within SLA\n');
      const jobs = backy(['jobs', '-c', conf]);
      expect(jobs.code).toBe(0);
      expect(jobs.stdout.trimEnd().split('\n').at(-1)).toBe('2 jobs shown');
      // The listener speaks TLS only: a plain HTTP request gets no answer.
      await expect(
        fetch(`http://127.0.0.1:${port}/v1/status`, { headers: { authorization: `Bearer ${READ}` } }),
      ).rejects.toThrow();
      // A config naming another certificate: the daemon's is not trusted, and check says so.
      const other = certificate('other');
      const otherConf = join(root, 'other.conf');
      const config = parse(await readFile(conf, 'utf8'));
      await writeFile(otherConf, stringify({ ...config, api: { ...api, tls: other } }));
      const untrusted = backy(['check', '-c', otherConf]);
      expect(untrusted.code).toBe(2);
      expect(untrusted.stdout).toMatch(
        new RegExp(
          `^CRITICAL: the daemon's HTTP API at https://127\\.0\\.0\\.1:${port} does not answer: .*certificate.*\\n$`,
        ),
      );
    } finally {
      await stopDaemon(d);
    }
  }, 180_000);
});
