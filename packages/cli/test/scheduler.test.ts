import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { duplicateKeys, MiB } from '@backy/core/testing';
import { metricValue, parseMetrics } from '@backy/test-env/prometheus';
import { smtpReceiver, webhookReceiver } from '@backy/test-env/receivers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { BIN, backy, freePort, skipWithout, tempDir, until } from './helpers.js';

// End-to-end: the real daemon (the built binary) with file-source jobs on intervals of seconds.

const HOUR = 3600_000;
const DAY = 24 * HOUR;

/**
 * A job's first slot of an interval after `ms`. Mirrors the scheduler's spread (sha256 of the name modulo
 * the interval), which is promised to stay stable across versions: a change here is a change for operators.
 */
function slotAfter(job: string, intervalMs: number, ms: number): number {
  const offset = createHash('sha256').update(job, 'utf8').digest().readUIntBE(0, 6) % intervalMs;
  return (Math.floor((ms - offset) / intervalMs) + 1) * intervalMs + offset;
}

/** Start times of a job's revisions with the tag, oldest first. */
async function tagTimes(dir: string, tag: string): Promise<number[]> {
  return (await revisions(dir))
    .filter((r) => r.tags.includes(tag))
    .map((r) => Date.parse(r.timestamp))
    .sort((x, y) => x - y);
}

/** A tag runs once, then again only at each of its next slots: which may fall inside a test's minute. */
function expectOncePerSlot(job: string, intervalMs: number, times: number[]): void {
  expect(times.length).toBeGreaterThanOrEqual(1);
  for (let i = 1; i < times.length; i++)
    expect(times[i]).toBeGreaterThanOrEqual(slotAfter(job, intervalMs, times[i - 1]!));
  expect(times.length).toBeLessThanOrEqual(1 + Number(slotAfter(job, intervalMs, times[0]!) <= Date.now()));
}

async function revisions(
  dir: string,
): Promise<{ uuid: string; tags: string[]; trust: string; timestamp: string }[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const revs = [];
  for (const name of names.filter((n) => n.endsWith('.rev'))) {
    const data = parse(await readFile(join(dir, name), 'utf8').catch(() => 'null'));
    if (data?.stats != null) revs.push(data);
  }
  return revs;
}

/** Sends telnet lines and collects the answer up to the given number of prompts. */
async function shell(where: number | string, lines: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(typeof where === 'string' ? { path: where } : { port: where, host: '127.0.0.1' });
    let text = '';
    let sent = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`telnet shell did not answer; got:\n${text}`));
    }, 15_000);
    socket.on('data', (d) => {
      text += d.toString('utf8');
      const prompts = text.split('backy> ').length - 1;
      if (prompts > sent && sent < lines.length) socket.write(`${lines[sent++]}\r\n`);
      else if (prompts > lines.length) {
        clearTimeout(timer);
        socket.end();
        resolve(text);
      }
    });
    socket.on('error', reject);
  });
}

/** PIDs of processes whose command line contains `text`. */
async function processesMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(text)) pids.push(Number(entry));
  }
  return pids;
}

interface Daemon {
  child: ChildProcess;
  stderr: string;
  exit: Promise<number | null>;
}

function startDaemon(args: string[]): Daemon {
  const child = spawn(process.execPath, [BIN, 'scheduler', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon: Daemon = {
    child,
    stderr: '',
    exit: new Promise((r) => child.once('exit', (code) => r(code))),
  };
  child.stderr!.on('data', (d) => {
    daemon.stderr += d;
  });
  return daemon;
}

let dir: { path: string; cleanup: () => Promise<void> };
let conf: string;
let base: string;
let logPath: string;
let port: number;
interface Conf {
  global: Record<string, unknown>;
  schedules: Record<string, Record<string, { interval: string; keep: number }>>;
  jobs: Record<string, unknown>;
}
let config: Conf;
const daemons: Daemon[] = [];

const check = () => backy(['check', '-c', conf]);
const logText = async (path = logPath) => readFile(path, 'utf8').catch(() => '');

beforeAll(async () => {
  dir = await tempDir();
  conf = join(dir.path, 'backy.conf');
  base = join(dir.path, 'base');
  logPath = join(dir.path, 'log', 'daemon.log');
  port = await freePort();
  for (const name of ['a', 'b', 'c', 'w'])
    await writeFile(join(dir.path, `${name}.img`), randomBytes(2 * MiB));
  const callback = join(dir.path, 'callback.sh');
  await writeFile(callback, `#!/bin/sh\ncat > "${dir.path}/callback-$1.yaml"\n`);
  await chmod(callback, 0o755);
  const job = (name: string, schedule = 'fast') => ({
    schedule,
    source: { type: 'file', filename: join(dir.path, `${name}.img`) },
  });
  config = {
    global: {
      'base-dir': base,
      'worker-limit': 2,
      'status-interval': 1,
      'telnet-addrs': '127.0.0.1',
      'telnet-port': port,
      'backup-completed-callback': callback,
    },
    schedules: {
      fast: { short: { interval: '5s', keep: 3 }, long: { interval: '1h', keep: 2 } },
      slow: { daily: { interval: '1d', keep: 3 } },
    },
    jobs: { a: job('a'), b: job('b'), w: job('w', 'slow') },
  };
  await writeFile(conf, stringify(config));
});

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode == null) d.child.kill('SIGKILL');
  await dir.cleanup();
});

describe('backy scheduler and backy check', () => {
  let daemon: Daemon;

  it('check is UNKNOWN before the daemon ever wrote a status file', () => {
    const r = check();
    expect(r.stdout).toBe(`UNKNOWN: No status file found at ${join(base, 'status')}\n`);
    expect(r.code).toBe(3);
  });

  it('starts, backs up every job at once, then keeps to the schedule', async () => {
    daemon = startDaemon(['-c', conf, '-l', logPath]);
    daemons.push(daemon);
    const first = await until('first revisions of a, b and w', async () => {
      const all = await Promise.all(['a', 'b', 'w'].map((j) => revisions(join(base, j))));
      return all.every((r) => r.length >= 1) ? all : null;
    });
    // New jobs start at once with all their tags.
    expect(first[0]!.some((r) => [...r.tags].sort().join() === 'long,short')).toBe(true);
    expect(first[1]!.some((r) => [...r.tags].sort().join() === 'long,short')).toBe(true);
    expect(first[2]!.map((r) => r.tags)).toEqual([['daily']]);
    // The effective archive config is in place, so `backy` by hand does what the daemon does.
    expect(parse(await readFile(join(base, 'a', 'config'), 'utf8'))).toEqual({
      source: { type: 'file', filename: join(dir.path, 'a.img') },
      schedule: config.schedules.fast,
    });
    expect(backy(['-b', join(base, 'a'), 'status']).code).toBe(0);
    // More `short` backups follow every 5 s; the daily job does not run again.
    await until('a third revision of a', async () => (await revisions(join(base, 'a'))).length >= 3, 40_000);
    expectOncePerSlot('a', HOUR, await tagTimes(join(base, 'a'), 'long'));
    expectOncePerSlot('w', DAY, await tagTimes(join(base, 'w'), 'daily'));
    // The per-job log and the completion callback with the revision list on stdin.
    expect(await logText(join(base, 'a', 'backy.log'))).toContain('backup completed');
    const cb = parse(
      await until('callback output', () =>
        readFile(join(dir.path, 'callback-a.yaml'), 'utf8').catch(() => null),
      ),
    );
    expect(Array.isArray(cb) && cb.length >= 1 && cb[0].uuid != null).toBe(true);
    expect(await logText()).toContain('"msg":"scheduler started"');
    // No record names a key twice (`pid` was: the base and the start line both bound it).
    for (const log of [logPath, join(base, 'a', 'backy.log')]) {
      const lines = (await logText(log)).split('\n').filter((l) => l !== '');
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.flatMap(duplicateKeys)).toEqual([]);
    }
    // The jobs' logs at info, as the daemon's own without -v.
    expect(await logText(join(base, 'a', 'backy.log'))).not.toContain('"level":20');
  });

  it('refuses a second daemon on the same base dir with status 69', () => {
    const r = backy(['scheduler', '-c', conf]);
    expect(r.code).toBe(69);
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^backy: error: another scheduler is already running for /),
    ]);
  });

  it('check is OK while every job is within SLA', async () => {
    await until('status file', () => stat(join(base, 'status')).catch(() => null));
    // Polled: on a loaded machine a 5 s job may be late for a moment.
    const r = await until('an OK from check', () => {
      const res = check();
      return res.code === 0 ? res : null;
    });
    expect(r.stdout).toBe('OK: 3 jobs within SLA\n');
  });

  it('answers in the telnet shell', async () => {
    const out = await shell(port, ['jobs', 'jobs ^[ab]$', 'status', 'run w', 'run nope', 'jobs (', 'help']);
    expect(out.startsWith('backy 0.1.0\r\nReady.\r\nbacky> ')).toBe(true);
    const [, all, ab, status, run, nope, badRegex] = out.split('backy> ');
    expect(all).toMatch(
      /│ Job +│ SLA +│ SLA overdue │ Status +│ Last Backup \(UTC\) +│ Last Tags +│ Last Dur │ Next Backup \(UTC\) +│ Next Tags +│/,
    );
    expect(all).toMatch(/│ w +│ OK +│ +- │ \w+ +│ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d │ daily +│/);
    expect(all).toContain('3 jobs shown');
    expect(ab).toContain('2 jobs shown');
    expect(ab).not.toMatch(/│ w /);
    expect(status).toMatch(/^jobs: 3\r\n/);
    expect(status).toMatch(/workers: \d busy, \d idle \(limit 2\)/);
    // On TCP nobody is trusted (no token configured): run goes through the shell's Unix socket.
    const socket = join(base, '.shell.sock');
    expect(run).toBe(
      `error: run is not allowed here without authentication: use the Unix socket ${socket}\r\n`,
    );
    expect(nope).toBe(run);
    expect(badRegex).toMatch(/^error: invalid regular expression/);
    expect((await stat(socket)).mode & 0o777).toBe(0o600);
    const [, ran, unknown] = (await shell(socket, ['run w', 'run nope'])).split('backy> ');
    expect(ran).toMatch(/^w: (started|queued, waiting for a free worker)\r\n$/);
    expect(unknown).toBe('error: unknown job "nope"\r\n');
    await until('the manual run of w', async () => (await revisions(join(base, 'w'))).length === 2);
  });

  it.skipIf(skipWithout('telnet client', 'telnet') != null)('works with the real telnet client', async () => {
    const client = spawn('telnet', ['127.0.0.1', String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    client.stdout!.on('data', (d) => {
      out += d;
    });
    const exited = new Promise((r) => client.once('exit', r));
    await until('the banner', () => out.includes('backy> '), 10_000);
    client.stdin!.write('jobs ^a$\n');
    await until('the table', () => out.includes('1 jobs shown'), 10_000);
    client.stdin!.write('quit\n');
    await exited;
    expect(out).toContain('Ready.');
    expect(out).toMatch(/│ a +│ OK +│/);
    expect(out).toContain('Goodbye.');
  });

  it.skipIf(skipWithout('nc client', 'nc') != null)('works with nc, reading a script from stdin', () => {
    const r = spawnSync('nc', ['-N', '127.0.0.1', String(port)], {
      input: 'status\njobs\nbogus\n',
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(r.stdout).toMatch(/jobs: 3\r\n/);
    expect(r.stdout).toContain('3 jobs shown');
    expect(r.stdout).toContain('error: unknown command "bogus"');
  });

  it('check WARNs about a job whose newest revision is distrusted', async () => {
    // Only w is distrusted, so the fast jobs may go on. w's manual run (the shell test) has made its
    // revision visible but may still hold the archive's lock while it finishes: distrust refuses with 69
    // then, which an operator would retry too.
    const r0 = await until('distrust of w once its manual run ended', () => {
      const res = backy(['-b', join(base, 'w'), 'distrust', '--force']);
      return res.code === 69 && res.stderr.includes('is already running') ? null : res;
    });
    expect(r0.code, r0.stderr).toBe(0);
    const r = await until('a WARNING from check', () => {
      const res = check();
      return res.code === 1 ? res : null;
    });
    expect(r.stdout.split('\n')[0]).toBe('WARNING: 1 jobs with a distrusted or unverified newest revision');
    expect(r.stdout).toMatch(/\nw: newest revision is distrusted \(/);
  });

  it('SIGHUP reloads a valid config: jobs added, removed and changed without a restart', async () => {
    const next = structuredClone(config);
    delete next.jobs.w;
    next.jobs.c = { schedule: 'fast', source: { type: 'file', filename: join(dir.path, 'c.img') } };
    next.schedules.fast.short.keep = 2;
    await writeFile(conf, stringify(next));
    daemon.child.kill('SIGHUP');
    await until('the first revision of c', async () => (await revisions(join(base, 'c'))).length >= 1);
    expect(await logText()).toMatch(
      /"added":\["c"\],"removed":\["w"\],"changed":\["a","b"\].*"msg":"config reloaded"/,
    );
    const out = await shell(port, ['jobs']);
    expect(out).toMatch(/│ c +│/);
    expect(out).not.toMatch(/│ w +│/);
    expect(daemon.child.exitCode).toBeNull();
    // The changed keep rule is in a's archive config after its next run.
    await until(
      'a config with keep 2',
      async () => parse(await readFile(join(base, 'a', 'config'), 'utf8')).schedule.short.keep === 2,
    );
    config = next;
  });

  it('SIGHUP with an invalid config keeps the old one in force', async () => {
    const broken = structuredClone(config);
    broken.global['worker-limt'] = 3;
    await writeFile(conf, stringify(broken));
    try {
      daemon.child.kill('SIGHUP');
      await until('the rejection in the log', async () => (await logText()).includes('reload rejected'));
      expect(await logText()).toContain('global: unknown key \\"worker-limt\\"');
      expect(daemon.child.exitCode).toBeNull();
      const out = await shell(port, ['jobs']);
      expect(out).toContain('3 jobs shown');
      // A new revision of b, by ID: expiry keeps their count level, so a count can miss one.
      const before = new Set((await revisions(join(base, 'b'))).map((r) => r.uuid));
      await until(
        'b keeps being backed up',
        async () => (await revisions(join(base, 'b'))).some((r) => !before.has(r.uuid)) || null,
        60_000,
      );
    } finally {
      // The later tests run `check` against this file: never leave it broken.
      await writeFile(conf, stringify(config));
    }
  }, 120_000);

  it('keeps running when a job fails, and check turns CRITICAL once it is out of SLA', async () => {
    await rm(join(dir.path, 'c.img'));
    await until('the failure in the log', async () =>
      /"job":"c".*backup failed with exit status \d+/.test(await logText()),
    );
    const r = await until(
      'a CRITICAL from check naming c',
      () => {
        const res = check();
        return res.code === 2 && res.stdout.includes('\nc (last time: ') ? res : null;
      },
      30_000,
    );
    const lines = r.stdout.trim().split('\n');
    // Only c, unless the machine is so loaded that a 5 s job is late as well.
    expect(lines[0]).toMatch(/^CRITICAL: \d+ jobs not within SLA(; |$)/);
    expect(lines.filter((l) => l.includes(' (last time: ')).length).toBe(
      Number(/(\d+) jobs not within SLA/.exec(lines[0]!)![1]),
    );
    // And why: the failed backup's own error line.
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^c: backup failed( \(\d+ times in a row\))?: source file .*c\.img: no such file$/,
      ),
    );
    expect(lines.find((l) => l.startsWith('c ('))).toMatch(
      /^c \(last time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\), overdue by \d+s$/,
    );
    expect(daemon.child.exitCode).toBeNull();
    const out = await shell(port, ['jobs ^c$']);
    expect(out).toMatch(/│ c +│ TOO OLD │/);
    expect(out).toMatch(/│ failed +│/);
  });

  it('continues its log in a new file after logrotate moved it away', async () => {
    await rename(logPath, `${logPath}.1`);
    await until(
      'a new daemon log',
      async () => (await logText()).includes('"msg":"backup completed"'),
      30_000,
    );
    expect(await logText(`${logPath}.1`)).toContain('scheduler started');
    // Per-job logs are opened by each run, so they follow too.
    await rename(join(base, 'a', 'backy.log'), join(base, 'a', 'backy.log.1'));
    await until(
      'a new per-job log',
      async () => (await logText(join(base, 'a', 'backy.log'))).includes('backup completed'),
      30_000,
    );
  });

  it('SIGTERM when idle or busy: exits 0 and releases the lock', async () => {
    daemon.child.kill('SIGTERM');
    const started = Date.now();
    expect(await daemon.exit).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await logText()).toContain('"msg":"scheduler stopped"');
  });

  it('check is CRITICAL when the status file is older than 5 minutes', async () => {
    const old = new Date(Date.now() - 6 * 60_000);
    await utimes(join(base, 'status'), old, old);
    const r = check();
    expect(r.stdout).toBe('CRITICAL: Status file is older than 5 minutes\n');
    expect(r.code).toBe(2);
  });
});

describe('failed runs in the status file, the shell, check, the callback and notifications', () => {
  it('WARNING naming the job and why, CRITICAL after critical-failures, OK once fixed, each sent by webhook and email; a configured job the daemon lacks is CRITICAL', async () => {
    const root = join(dir.path, 'failing');
    const image = join(root, 'f.img');
    const failConf = join(root, 'backy.conf');
    const failPort = await freePort();
    await mkdir(root, { recursive: true });
    await writeFile(image, randomBytes(MiB));
    const callback = join(root, 'callback.sh');
    // Appends what each call hears: the job, then the outcome variables.
    await writeFile(
      callback,
      `#!/bin/sh\ncat > /dev/null\necho "$1|$BACKY_OUTCOME|$BACKY_CONSECUTIVE_FAILURES|$BACKY_REASON" >> "${root}/calls"\n`,
    );
    await chmod(callback, 0o755);
    const hook = await webhookReceiver();
    const mail = await smtpReceiver();
    const apiPort = await freePort();
    const api = (path: string, token?: string, method = 'GET') =>
      fetch(`http://127.0.0.1:${apiPort}${path}`, {
        method,
        headers: token == null ? {} : { authorization: `Bearer ${token}` },
      });
    const READ = 'monitoring-0123456789';
    const OPERATOR = 'operator-0123456789';
    const events = () => hook.got.map((g) => `${g.body.event}${g.body.severity === 'critical' ? '!' : ''}`);
    const failConfig = {
      api: {
        listen: `127.0.0.1:${apiPort}`,
        tokens: [
          { name: 'nagios', role: 'read', value: READ },
          { name: 'ops', role: 'operator', value: OPERATOR },
        ],
      },
      notifications: [
        { type: 'webhook', url: hook.url, 'secret-header': { name: 'X-Backy-Token', value: 'tok' } },
        {
          type: 'email',
          from: 'backy@localhost',
          to: ['ops@localhost'],
          smtp: { host: '127.0.0.1', port: mail.port, tls: 'none' },
          events: ['job-failed', 'job-recovered'],
        },
      ],
      global: {
        'base-dir': join(root, 'base'),
        'status-interval': 1,
        'telnet-addrs': '127.0.0.1',
        'telnet-port': failPort,
        'critical-failures': 2,
        'backup-completed-callback': callback,
        'metrics-textfile': join(root, 'backy.prom'),
      },
      schedules: { s: { daily: { interval: '1d', keep: 3 } } },
      jobs: { f: { schedule: 's', source: { type: 'file', filename: image } } },
    };
    await writeFile(failConf, stringify(failConfig));
    const checkF = (path = failConf) => backy(['check', '-c', path]);
    const calls = async () =>
      (await readFile(join(root, 'calls'), 'utf8').catch(() => '')).trim().split('\n');
    const d = startDaemon(['-c', failConf]);
    daemons.push(d);
    try {
      await until('an OK after the first backup', () => checkF().code === 0 || null);
      await rm(image);
      // `run` needs the shell's Unix socket (or a token on TCP).
      const failShell = join(root, 'base', '.shell.sock');
      expect(await shell(failShell, ['run f'])).toContain('f: started');
      const warning = await until('a WARNING naming f', () => {
        const r = checkF();
        return r.code === 1 ? r : null;
      });
      expect(warning.stdout.split('\n')).toEqual([
        'WARNING: 1 jobs whose last run failed',
        `f: backup failed: source file ${image}: no such file`,
        '',
      ]);
      await until('the callback of the failed run', async () => (await calls()).length === 2 || null);
      // Sent, with the reason, to the webhook and by mail.
      await until(
        'the failure by webhook and mail',
        () => (events().length >= 2 && mail.mails.length >= 1) || null,
      );
      expect(events()).toEqual(['daemon-started', 'job-failed']);
      expect(hook.got[1]!.headers['x-backy-token']).toBe('tok');
      expect(hook.got[1]!.body).toMatchObject({
        job: 'f',
        severity: 'warning',
        reason: `source file ${image}: no such file`,
        consecutiveFailures: 1,
      });
      expect(mail.mails[0]!.data).toContain('Subject: [backy] WARNING: backup of f failed');
      expect(mail.mails[0]!.data).toContain(`Reason:   source file ${image}: no such file`);
      // The API shows it; no token, a wrong one, or a read token calling run: 401, and nothing runs.
      const viaApi = (await (await api('/v1/status', READ)).json()) as { jobs: Record<string, unknown>[] };
      expect(viaApi.jobs[0]).toMatchObject({
        job: 'f',
        last_outcome: 'failed',
        last_reason: `source file ${image}: no such file`,
      });
      expect((await api('/v1/status')).status).toBe(401);
      expect((await api('/v1/status', 'wrong-token-0123456789')).status).toBe(401);
      expect((await api('/v1/jobs/f/run', READ, 'POST')).status).toBe(401);
      expect(await calls()).toEqual(['f|ok|0|', `f|failed|1|source file ${image}: no such file`]);
      // The second failure in a row (critical-failures: 2) is CRITICAL.
      await until(
        'f idle again',
        async () => /│ f +│[^\n]*│ failed +│/.test(await shell(failPort, ['jobs'])) || null,
      );
      expect((await api('/v1/jobs/f/run', OPERATOR, 'POST')).status).toBe(202);
      const critical = await until('a CRITICAL naming f', () => {
        const r = checkF();
        return r.code === 2 ? r : null;
      });
      expect(critical.stdout.split('\n').slice(0, 2)).toEqual([
        'CRITICAL: 1 jobs failed 2 or more times in a row',
        `f: backup failed (2 times in a row): source file ${image}: no such file`,
      ]);
      await until('the second failure sent as critical', () => events().length >= 3 || null);
      expect(events()).toEqual(['daemon-started', 'job-failed', 'job-failed!']);
      const families = parseMetrics(await (await api('/metrics', READ)).text());
      expect(metricValue(families, 'backy_job_consecutive_failures', { job: 'f' })).toBe('2');
      expect(metricValue(families, 'backy_job_last_run_outcome', { job: 'f', outcome: 'failed' })).toBe('1');
      const table = await shell(failPort, ['jobs']);
      expect(table).toMatch(/│ f +│.*│ failed ×2 +│ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d +│\r\n/);
      expect(table).toContain(`f: failed: source file ${image}: no such file\r\n`);
      // check asks the API, which is live; the status file follows at the daemon's next write.
      const status = await until('the status file with the second failure', async () => {
        const entry = parse(await readFile(join(root, 'base', 'status'), 'utf8'))[0];
        return entry.consecutive_failures === 2 ? entry : null;
      });
      expect(status).toMatchObject({
        job: 'f',
        last_outcome: 'failed',
        last_reason: `source file ${image}: no such file`,
        consecutive_failures: 2,
      });
      expect(Date.parse(status.last_success)).toBeLessThan(Date.parse(status.last_run));
      // Fixed: the next run succeeds and check is OK again.
      await writeFile(image, randomBytes(MiB));
      await until(
        'f idle again',
        async () => /│ f +│[^\n]*│ failed +│/.test(await shell(failPort, ['jobs'])) || null,
      );
      await shell(failShell, ['run f']);
      const ok = await until('an OK once fixed', () => {
        const r = checkF();
        return r.code === 0 ? r : null;
      });
      expect(ok.stdout).toBe('OK: 1 jobs within SLA\n');
      // Its recent runs, newest first, each with its outcome and reason.
      const { runs } = (await (await api('/v1/jobs/f/runs', READ)).json()) as {
        runs: { kind: string; outcome: string; reason: string | null; duration: number }[];
      };
      expect(runs.map((r) => [r.kind, r.outcome, r.reason])).toEqual([
        ['backup', 'ok', null],
        ['backup', 'failed', `source file ${image}: no such file`],
        ['backup', 'failed', `source file ${image}: no such file`],
        ['backup', 'ok', null],
      ]);
      expect(runs.every((r) => r.duration >= 0)).toBe(true);
      expect((await api('/v1/jobs/nope/runs', READ)).status).toBe(404);
      expect((await api('/v1/jobs/f/runs')).status).toBe(401);
      // The node_exporter textfile, written after the run: the recovered job and its store (purged).
      const textfile = await until('the textfile after the recovery', async () => {
        const text = await readFile(join(root, 'backy.prom'), 'utf8').catch(() => '');
        const families = parseMetrics(text);
        return metricValue(families, 'backy_job_consecutive_failures', { job: 'f' }) === '0' &&
          metricValue(families, 'backy_store_chunks') != null
          ? families
          : null;
      });
      const archiveF = join(root, 'base', 'f');
      const revs = (await readdir(archiveF)).filter((n) => n.endsWith('.rev'));
      const store = join(archiveF, 'chunks');
      let chunks = 0;
      for (const fan of (await readdir(store)).filter((n) => /^[0-9a-f]{2}$/.test(n)))
        chunks += (await readdir(join(store, fan))).length;
      expect(metricValue(textfile, 'backy_job_revisions', { job: 'f' })).toBe(String(revs.length));
      expect(metricValue(textfile, 'backy_job_last_backup_read_bytes', { job: 'f' })).toBe(String(MiB));
      // The new image is random: its one chunk is new.
      expect(metricValue(textfile, 'backy_job_last_backup_chunks', { job: 'f', kind: 'new' })).toBe('1');
      expect(metricValue(textfile, 'backy_store_chunks', { store })).toBe(String(chunks));
      expect(metricValue(textfile, 'process_cpu_seconds_total')).toBeUndefined();
      await until('the recovery sent', () => (events().length >= 4 && mail.mails.length >= 3) || null);
      expect(events()).toEqual(['daemon-started', 'job-failed', 'job-failed!', 'job-recovered']);
      expect(mail.mails.map((m) => /^Subject: (.*)$/m.exec(m.data)?.[1])).toEqual([
        '[backy] WARNING: backup of f failed',
        '[backy] CRITICAL: backup of f failed',
        '[backy] INFO: backup of f succeeded again',
      ]);
      // A job added to the config without a reload: the daemon does not know it, check does.
      const added = join(root, 'added.conf');
      await writeFile(
        added,
        stringify({ ...failConfig, jobs: { ...failConfig.jobs, g: failConfig.jobs.f } }),
      );
      const missing = checkF(added);
      expect(missing.code).toBe(2);
      expect(missing.stdout.split('\n').slice(0, 2)).toEqual([
        'CRITICAL: 1 jobs missing from the status file',
        `g: configured in ${added} but not in the status file: the scheduler has not loaded it (reload or start it)`,
      ]);
      d.child.kill('SIGTERM');
      expect(await d.exit).toBe(0);
      // The daemon's last words are sent before it exits.
      expect(events().at(-1)).toBe('daemon-stopped');
    } finally {
      d.child.kill('SIGTERM');
      await d.exit;
      await hook.close();
      await mail.close();
    }
  }, 120_000);
});

describe('a failed copy-to', () => {
  it('is a WARNING of check naming the job and why, shown by the API and sent as copy-failed; the revision stays', async () => {
    const root = join(dir.path, 'copyfail');
    const image = join(root, 'c.img');
    const conf = join(root, 'backy.conf');
    await mkdir(root, { recursive: true });
    await writeFile(image, randomBytes(MiB));
    // A target below a regular file: no copy can ever be made there.
    const target = join(root, 'c.img', 'offsite');
    const hook = await webhookReceiver();
    const apiPort = await freePort();
    const READ = 'monitoring-0123456789';
    await writeFile(
      conf,
      stringify({
        api: { listen: `127.0.0.1:${apiPort}`, tokens: [{ name: 'nagios', role: 'read', value: READ }] },
        notifications: [{ type: 'webhook', url: hook.url }],
        global: { 'base-dir': join(root, 'base'), 'status-interval': 1, 'telnet-socket': false },
        schedules: { s: { daily: { interval: '1d', keep: 3 } } },
        jobs: { c: { schedule: 's', source: { type: 'file', filename: image }, 'copy-to': target } },
      }),
    );
    const d = startDaemon(['-c', conf]);
    daemons.push(d);
    try {
      // Before its first backup ends, check WARNs that c has none yet: wait for the copy's failure.
      const warning = await until('a WARNING naming c and its copy', () => {
        const r = backy(['check', '-c', conf]);
        return r.code === 1 && r.stdout.includes('c: copy failed') ? r : null;
      });
      const [head, line] = warning.stdout.split('\n');
      expect(head).toBe('WARNING: 1 jobs whose last run failed');
      expect(line!.startsWith('c: copy failed: ')).toBe(true);
      expect(line).toContain(target);
      const job = (await (
        await fetch(`http://127.0.0.1:${apiPort}/v1/jobs/c`, { headers: { authorization: `Bearer ${READ}` } })
      ).json()) as Record<string, unknown>;
      expect(job).toMatchObject({ job: 'c', last_outcome: 'copy-failed', last_trust: 'trusted' });
      expect(String(job.last_reason)).toContain(target);
      await until('copy-failed sent', () => hook.got.some((g) => g.body.event === 'copy-failed') || null);
      const sent = hook.got.find((g) => g.body.event === 'copy-failed')!.body;
      expect(sent).toMatchObject({ job: 'c', severity: 'warning' });
      // The backup itself was made: the archive has its revision.
      const revisions = JSON.parse(
        backy(['-b', join(root, 'base', 'c'), 'status', '--json']).stdout,
      ).revisions;
      expect(revisions).toHaveLength(1);
    } finally {
      d.child.kill('SIGTERM');
      await d.exit;
      await hook.close();
    }
  }, 120_000);
});

describe('SIGTERM during a running backup', () => {
  it('terminates the backup, leaves no partial revision and exits 0', async () => {
    const big = join(dir.path, 'big.img');
    // Incompressible, so the backup takes a while.
    await writeFile(big, randomBytes(256 * MiB));
    const bigBase = join(dir.path, 'bigbase');
    const bigConf = join(dir.path, 'big.conf');
    await writeFile(
      bigConf,
      stringify({
        global: {
          'base-dir': bigBase,
          'telnet-addrs': '127.0.0.1',
          'telnet-port': await freePort(),
          'status-interval': 1,
        },
        schedules: { s: { daily: { interval: '1d', keep: 1 } } },
        jobs: { big: { schedule: 's', source: { type: 'file', filename: big } } },
      }),
    );
    const d = startDaemon(['-c', bigConf]);
    daemons.push(d);
    const archive = join(bigBase, 'big');
    // Chunks being written means the backup is in full swing.
    await until('chunks of the running backup', async () => {
      const top = await readdir(join(archive, 'chunks')).catch(() => [] as string[]);
      return top.some((n) => /^[0-9a-f]{2}$/.test(n));
    });
    expect((await processesMentioning(archive)).length).toBeGreaterThan(0);
    const started = Date.now();
    d.child.kill('SIGTERM');
    expect(await d.exit).toBe(0);
    expect(Date.now() - started).toBeLessThan(25_000);
    const leftovers = (await readdir(archive)).filter((f) => f.endsWith('.rev') || f.endsWith('.tmp'));
    expect(leftovers).toEqual([]);
    expect(await revisions(archive)).toEqual([]);
    expect(d.stderr).toContain('backup terminated because the scheduler is stopping');
    // No backup process of that archive is left behind.
    expect(await processesMentioning(archive)).toEqual([]);
    // The plain CLI finds nothing half-done either.
    const status = backy(['-b', archive, 'status']);
    expect(status.code, status.stderr).toBe(0);
    await rm(big);
  });
});
