import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConsulClient } from '@backy/consul';
import { readFence } from '@backy/core';
import { captureLogger, tempDir } from '@backy/core/testing/helpers';
import { ChildProcessRunner, Scheduler } from '@backy/scheduler';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import { consulMissing, startConsulCluster, type TestConsulCluster } from '@backy/test-env/consul';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { FleetMember } from './member.js';

// Three schedulers over one three-server Consul cluster and one shared base directory: servers a and
// b in this process (Scheduler objects running the real `backy backup`), server c as a real `backy
// scheduler` process, which is killed with SIGKILL in the middle of its work. The in-process runner
// skips expire and purge (each another node process per backup; nothing of fleet mode) to keep the CI
// time down; c's daemon runs them.
const missing = consulMissing();
const skip = skipWithoutCli('fleet schedulers', missing);
if (skip != null) console.warn(`[fleet] scheduler tests skipped: ${skip}`);

const INTERVAL = 10;
const JOBS = ['vm0', 'vm1', 'vm2', 'vm3', 'vm4', 'vm5'];
let cluster: TestConsulCluster;
let root: { path: string; cleanup(): Promise<void> };

beforeAll(async () => {
  if (skip != null) return;
  cluster = await startConsulCluster();
  root = await tempDir('backy-fleet-e2e-');
});
afterAll(async () => {
  await cluster?.stop();
  await root?.cleanup();
});

class BackupOnlyRunner extends ChildProcessRunner {
  override expire = async () => ({ ok: true, exitCode: 0, signal: null, stderr: '', durationMs: 0 });
  override purge = this.expire;
}

function config(server: string, agent: number, prefix: string) {
  const base = join(root.path, 'base');
  return {
    global: {
      'base-dir': base,
      'worker-limit': 2,
      'status-file': join(root.path, `status-${server}`),
      'telnet-socket': false,
      'telnet-addrs': '127.0.0.1',
      'telnet-port': 0,
    },
    schedules: { fast: { fast: { interval: INTERVAL, keep: 1000 } } },
    jobs: Object.fromEntries(
      JOBS.map((job) => [
        job,
        { schedule: 'fast', source: { type: 'file', filename: join(root.path, `${job}.img`) } },
      ]),
    ),
    fleet: {
      consul: cluster.addresses[agent],
      server,
      'session-ttl': 2,
      'lock-delay': 1,
      'key-prefix': prefix,
    },
  };
}

/** Each job's revision start times (ms), oldest first. */
async function revisionTimes(job: string): Promise<number[]> {
  const dir = join(root.path, 'base', job);
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.rev'));
  const times = await Promise.all(
    files.map(async (f) =>
      Date.parse(/timestamp: '?([^'\n]+)/.exec(await readFile(join(dir, f), 'utf8'))![1]!),
    ),
  );
  return times.sort((a, b) => a - b);
}

async function until(what: string, condition: () => Promise<boolean>, ms: number): Promise<void> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > ms) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe.skipIf(skip != null)('fleet schedulers sharing jobs over Consul', () => {
  it('back up every slot of every job once; a server stalled past its TTL (SIGSTOP) commits nothing stale; the jobs of one killed with -9 are taken over', async () => {
    const prefix = `test/fleet-e2e-${process.pid}`;
    for (const job of JOBS)
      await writeFile(join(root.path, `${job}.img`), Buffer.alloc(1 << 20, job.charCodeAt(2)));
    await mkdir(join(root.path, 'base'), { recursive: true });
    const inProcess: Array<{ scheduler: Scheduler; member: FleetMember }> = [];
    for (const [server, agent] of [
      ['a', 0],
      ['b', 1],
    ] as const) {
      const path = join(root.path, `${server}.yaml`);
      await writeFile(path, stringify(config(server, agent, prefix)));
      const log = captureLogger();
      const member = new FleetMember({
        client: new ConsulClient({ address: cluster.addresses[agent]! }),
        server,
        labels: {},
        workers: 2,
        ttlSeconds: 2,
        lockDelaySeconds: 1,
        prefix,
        logger: log.logger,
      });
      member.start();
      const runner = new BackupOnlyRunner({ command: [process.execPath, BACKY_BIN] });
      const scheduler = await Scheduler.start({
        configPath: path,
        logger: log.logger,
        runner,
        fleet: member,
      });
      inProcess.push({ scheduler, member });
    }
    const confC = join(root.path, 'c.yaml');
    await writeFile(confC, stringify(config('c', 2, prefix)));
    const c: ChildProcess = spawn(
      process.execPath,
      [BACKY_BIN, 'scheduler', '-c', confC, '-l', join(root.path, 'c.log')],
      {
        stdio: 'ignore',
      },
    );
    try {
      // Two rounds: the first backups, then one scheduled slot each.
      await until(
        'two backups of every job',
        async () => (await Promise.all(JOBS.map(revisionTimes))).every((t) => t.length >= 2),
        90_000,
      );
      const byServer = await Promise.all(
        JOBS.map(async (j) => (await readFence(join(root.path, 'base', j)))?.server),
      );
      expect(new Set(byServer).size, `servers that ran jobs: ${byServer}`).toBeGreaterThanOrEqual(2);
      const cJobs = JOBS.filter((_, i) => byServer[i] === 'c');
      const cLog = join(root.path, 'c.log');
      await stallServer(c, cLog);
      // c dies with -9 as soon as it has taken a job again (its backup child may still finish).
      await nextTaken(cLog);
      c.kill('SIGKILL');
      const killedAt = Date.now();
      // Every job is backed up again after the kill, and c's jobs are taken by a or b (c's orphaned
      // backup child may still commit the slot it had begun: its token is valid until c's session expires).
      await until(
        "a backup of every job after the kill, and c's jobs taken over",
        async () =>
          (await Promise.all(JOBS.map(revisionTimes))).every((t) => t.some((at) => at > killedAt + 1000)) &&
          (await Promise.all(cJobs.map(fenceOf))).every((server) => server !== 'c'),
        60_000,
      );
      // One view: a's status rows name for every job its owner (a or b now) and who ran it.
      await until('a sees c gone', async () => inProcess[0]!.member.view().servers.length === 2, 20_000);
      const rows = inProcess[0]!.scheduler.jobs();
      expect(rows.map((r) => r.fleet_state)).toEqual(JOBS.map(() => 'assigned'));
      for (const row of rows) expect(['a', 'b']).toContain(row.fleet_owner);
      expect(rows.every((r) => ['a', 'b', 'c'].includes(r.fleet_server!))).toBe(true);
      for (const job of JOBS) {
        const times = await revisionTimes(job);
        // Slot k of a job: [k × interval + offset, …): one revision at most in each.
        const slots = times.map((t) => Math.floor((t - spreadOffset(job)) / (INTERVAL * 1000)));
        expect(
          new Set(slots).size,
          `${job}: revisions at ${times.map((t) => new Date(t).toISOString())}`,
        ).toBe(slots.length);
        // Within the SLA (1.5 × interval) plus the failover time (2 × TTL + lock-delay) and slack for a loaded machine.
        for (let i = 1; i < times.length; i++)
          expect(times[i]! - times[i - 1]!).toBeLessThan(1.5 * INTERVAL * 1000 + 5000 + 5000);
      }
      console.info(
        `[fleet] jobs run by c before the kill: ${cJobs.join(', ') || 'none'}; revisions: ${(await Promise.all(JOBS.map(revisionTimes))).map((t) => t.length)}`,
      );
    } finally {
      c.kill('SIGKILL');
      for (const { scheduler, member } of inProcess) {
        await scheduler.stop();
        await member.stop();
      }
    }
  });
});

const fenceOf = async (job: string) => (await readFence(join(root.path, 'base', job)))?.server;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const takenLines = async (log: string) =>
  (await readFile(log, 'utf8')).split('\n').filter((l) => l.includes('job taken'));

/** Waits until the server logging to `log` takes another job; returns the job's name. */
async function nextTaken(log: string): Promise<string> {
  const before = (await takenLines(log)).length;
  await until('c takes a job', async () => (await takenLines(log)).length > before, 60_000);
  return (JSON.parse((await takenLines(log))[before]!) as { job: string }).job;
}

/** The running `backy backup` child of process `pid`, if any (read from /proc). */
async function backupChildOf(pid: number): Promise<number | null> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmd.split('\0').includes('backup')) return Number(entry);
  }
  return null;
}

/**
 * SIGSTOP of server c (and of the backup it runs) past its session TTL: another server takes the job
 * and makes the slot; after SIGCONT, c must not commit its stale backup, and says so in its log.
 */
async function stallServer(c: ChildProcess, cLog: string): Promise<void> {
  const job = await nextTaken(cLog);
  let child: number | null = null;
  for (let i = 0; i < 40 && child == null; i++) {
    child = await backupChildOf(c.pid!);
    if (child == null) await sleep(50);
  }
  process.kill(c.pid!, 'SIGSTOP');
  if (child != null) process.kill(child, 'SIGSTOP');
  try {
    await until(`another server takes ${job}`, async () => (await fenceOf(job)) !== 'c', 30_000);
  } finally {
    process.kill(c.pid!, 'SIGCONT');
    if (child != null) process.kill(child, 'SIGCONT');
  }
  await until(
    'c says it lost the lock',
    async () => (await readFile(cLog, 'utf8')).includes("lost the job's lock"),
    20_000,
  );
  console.info(
    `[fleet] c stalled in ${job} (backup child ${child == null ? 'not started yet' : 'stopped too'}); it did not commit`,
  );
}

/** The scheduler's slot offset of a job (schedule-math.ts: sha256 of the name modulo the interval). */
function spreadOffset(job: string): number {
  return createHash('sha256').update(job, 'utf8').digest().readUIntBE(0, 6) % (INTERVAL * 1000);
}
