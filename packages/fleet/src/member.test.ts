import { spawnSync } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConsulClient } from '@backy/consul';
import { captureLogger, tempDir } from '@backy/core/testing/helpers';
import { checkJobs, withFleetFields } from '@backy/scheduler';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import {
  consulHttp,
  consulMissing,
  createToken,
  startConsul,
  startConsulCluster,
  type TestConsulCluster,
} from '@backy/test-env/consul';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fleetMemberOf } from './index.js';
import { FleetMember } from './member.js';

// One three-server Consul cluster on loopback for the whole file (TTL 2 s, lock-delay 1 s); each test
// uses its own key prefix. The quorum test runs last: it kills two of the servers.
const missing = consulMissing();
if (missing != null) console.warn(`[fleet] Consul tests skipped: ${missing}`);
const noCli = skipWithoutCli('fleet fencing through backy backup', missing);

let cluster: TestConsulCluster;
let prefixes = 0;
const members: FleetMember[] = [];

beforeAll(async () => {
  if (missing == null) cluster = await startConsulCluster();
});
afterAll(async () => {
  await Promise.all(members.map((m) => m.stop({ leave: false })));
  await cluster?.stop();
});

function member(
  name: string,
  agent: number,
  prefix: string,
  labels: Record<string, string> = {},
  ttlSeconds = 2,
) {
  const log = captureLogger();
  const m = new FleetMember({
    client: new ConsulClient({ address: cluster.addresses[agent]!, timeoutMs: 15_000 }),
    server: name,
    labels,
    workers: 1,
    ttlSeconds,
    lockDelaySeconds: 1,
    prefix,
    logger: log.logger,
  });
  members.push(m);
  m.start();
  return { m, log };
}

async function until(
  what: string,
  condition: () => boolean | Promise<boolean>,
  ms = 30_000,
): Promise<number> {
  const start = Date.now();
  while (!(await condition())) {
    if (Date.now() - start > ms) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - start;
}

const jobs = Array.from({ length: 30 }, (_, i) => `vm${i}`);
const newPrefix = () => `test/fleet-${process.pid}-${++prefixes}`;

describe.skipIf(missing != null)('fleet members over a three-server Consul cluster', () => {
  it("agree on one owner per job, and move a dead server's jobs after its TTL", async () => {
    const prefix = newPrefix();
    const all = ['a', 'b', 'c'].map((n, i) => member(n, i, prefix).m);
    await until('all three see each other', () => all.every((m) => m.ready && m.view().servers.length === 3));
    for (const job of jobs) expect(all.filter((m) => m.owns(job, undefined)).length).toBe(1);
    const ownedByB = jobs.filter((j) => all[1]!.owns(j, undefined));
    expect(ownedByB.length).toBeGreaterThan(3);
    // b stops renewing as a crashed server would: Consul drops its session after TTL to 2×TTL.
    await all[1]!.stop({ leave: false });
    const moved = await until('a and c notice b is gone', () =>
      [all[0]!, all[2]!].every((m) => m.view().servers.length === 2),
    );
    console.info(`[fleet] a crashed server's session expired after ${moved} ms (TTL 2 s)`);
    expect(moved).toBeLessThan(10_000);
    for (const job of jobs) expect([all[0]!, all[2]!].filter((m) => m.owns(job, undefined)).length).toBe(1);
    await Promise.all([all[0]!.stop(), all[2]!.stop()]);
  });

  it('runs a job only on a server with its labels; a server with none of them owns nothing', async () => {
    const prefix = newPrefix();
    const a = member('a', 0, prefix, { site: 'x' }).m;
    const b = member('b', 1, prefix, { site: 'y' }).m;
    await until('both registered', () => a.ready && b.ready && a.view().servers.length === 2);
    for (const job of jobs) {
      expect(a.owns(job, { site: 'x' })).toBe(true);
      expect(b.owns(job, { site: 'x' })).toBe(false);
      expect(a.owns(job, { site: 'z' }) || b.owns(job, { site: 'z' })).toBe(false);
    }
    await Promise.all([a.stop(), b.stop()]);
  });

  it.skipIf(noCli != null)(
    "a server that lost the job's lock cannot commit: its backup is refused by the fence, and says so",
    async () => {
      const dir = await tempDir('backy-fleet-');
      const prefix = newPrefix();
      try {
        const archive = join(dir.path, 'vm0');
        await writeFile(join(dir.path, 'vm0.img'), Buffer.alloc(1 << 20, 3));
        const cli = (...args: string[]) =>
          spawnSync(process.execPath, [BACKY_BIN, '-b', archive, ...args], { encoding: 'utf8' });
        expect(cli('init', 'file', join(dir.path, 'vm0.img')).status).toBe(0);
        const a = member('a', 0, prefix, { site: 'x' });
        await until('a registered', () => a.m.ready);
        const claimA = await a.m.claim('vm0', archive, { site: 'x' });
        expect(claimA).not.toBeNull();
        // a's session is invalidated (as after a pause past its TTL): it learns so at its next renewal.
        const session = (
          await consulHttp({ address: cluster.addresses[0]! }, 'GET', `/v1/kv/${prefix}/jobs/vm0`)
        ).json() as [{ Session: string }];
        await consulHttp(
          { address: cluster.addresses[0]! },
          'PUT',
          `/v1/session/destroy/${session[0].Session}`,
        );
        await until('a notices it lost the lock', () => claimA!.lost.aborted, 10_000);
        expect(a.log.lines.some((l) => /lost the job's lock/.test(l.msg))).toBe(true);
        await a.m.stop({ leave: false });
        const b = member('b', 1, prefix, { site: 'x' });
        let claimB: Awaited<ReturnType<FleetMember['claim']>> = null;
        // Lock-delay (1 s) holds the job first.
        await until('b takes the job', async () => {
          claimB = await b.m.claim('vm0', archive, { site: 'x' });
          return claimB != null;
        });
        expect(claimB!.token).toBeGreaterThan(claimA!.token);
        const stale = cli('backup', '--fence', String(claimA!.token), 'daily');
        expect(stale.status).toBe(69);
        expect(stale.stderr).toMatch(
          new RegExp(
            `fenced: this backup holds fleet token ${claimA!.token}, .*token ${claimB!.token} of server b`,
          ),
        );
        expect(stale.stderr.trim().split('\n')).toHaveLength(1);
        const current = cli('backup', '--fence', String(claimB!.token), 'daily');
        expect(current.stderr).toBe('');
        expect(current.status).toBe(0);
        await claimB!.release();
        await b.m.stop();
      } finally {
        await dir.cleanup();
      }
    },
  );

  it('says in one line when Consul cannot be reached at start, and takes no job', async () => {
    const log = captureLogger();
    const m = new FleetMember({
      client: new ConsulClient({ address: 'http://127.0.0.9:8500' }),
      server: 'a',
      labels: {},
      workers: 1,
      ttlSeconds: 2,
      lockDelaySeconds: 1,
      prefix: newPrefix(),
      logger: log.logger,
    });
    m.start();
    try {
      await until(
        'the outage is logged',
        () => log.lines.some((l) => /no new job starts/.test(l.msg)),
        10_000,
      );
      const line = log.lines.find((l) => /no new job starts/.test(l.msg))!;
      expect(line.msg).toMatch(
        /^fleet: Consul at http:\/\/127\.0\.0\.9:8500 is unreachable \(ECONNREFUSED\); no new job starts/,
      );
      expect(m.owns('vm1', undefined)).toBe(false);
      expect(m.view().healthy).toBe(false);
    } finally {
      await m.stop();
    }
  });

  it("with quorum lost no job is this server's (one log line); it resumes by itself", async () => {
    const prefix = newPrefix();
    // TTL 10 s: a renewal may fail for up to half of it (a leader election after a server died) unnoticed;
    // with 6 s, an election on a loaded CI machine once took longer than 3 s.
    const { m, log } = member('a', 0, prefix, {}, 10);
    await until('a registered', () => m.ready);
    expect(m.owns('vm1', undefined)).toBe(true);
    // One Consul server of three dies: the cluster keeps its quorum, and nothing changes here.
    await cluster.kill(2);
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(m.view().problem).toBeNull();
    }
    expect(log.lines.filter((l) => /no new job starts/.test(l.msg))).toHaveLength(0);
    await cluster.kill(1);
    const noticed = await until('a notices the outage', () => !m.view().healthy, 40_000);
    console.info(`[fleet] quorum loss noticed after ${noticed} ms`);
    expect(m.owns('vm1', undefined)).toBe(false);
    expect(await m.claim('vm1', '/nonexistent', undefined)).toBeNull();
    // Several failed renewals later, still one line.
    await new Promise((r) => setTimeout(r, 3000));
    expect(log.lines.filter((l) => /no new job starts/.test(l.msg))).toHaveLength(1);
    expect(m.view().problem).toMatch(/Consul/);
    // What `backy check` says from this server's status rows.
    const row = {
      job: 'vm1',
      sla: 'OK',
      sla_overdue: 0,
      status: 'waiting',
      last_time: new Date().toISOString(),
      last_tags: 'daily',
      last_duration: 1,
      next_time: null,
      next_tags: null,
      manual_tags: '',
      last_trust: 'trusted',
      last_verification: 'ok',
      last_outcome: 'ok',
      consecutive_failures: 0,
    } as const;
    const check = checkJobs(withFleetFields([{ ...row }], m, () => undefined));
    expect(check.exitCode).toBe(1);
    expect(check.lines[0]).toBe('WARNING: fleet: Consul out of reach, no job starts on this server');
    cluster.restart(1);
    cluster.restart(2);
    const back = await until('a is healthy again', () => m.view().healthy && m.ready, 60_000);
    console.info(`[fleet] back ${back} ms after the servers restarted`);
    expect(m.owns('vm1', undefined)).toBe(true);
    expect(checkJobs(withFleetFields([{ ...row }], m, () => undefined)).exitCode).toBe(0);
    await m.stop();
  });
});

describe.skipIf(missing != null)('fleet with Consul ACLs (a dev agent, default deny)', () => {
  it('registers with the token from fleet.token-file; without it, one line says what to set', async () => {
    const agent = await startConsul({ acl: true });
    const dir = await tempDir('backy-fleet-acl-');
    try {
      const token = await createToken(
        agent,
        'backy-fleet',
        'key_prefix "test/" { policy = "write" }\nsession_prefix "" { policy = "write" }',
      );
      const tokenFile = join(dir.path, 'token');
      await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
      const config = {
        consul: agent.address,
        'token-file': tokenFile,
        server: 'a',
        labels: {},
        // A dev agent's minimum session TTL is Consul's default, 10 s.
        'session-ttl': 10,
        'lock-delay': 1,
        'key-prefix': newPrefix(),
      };
      const log = captureLogger();
      const m = await fleetMemberOf(config, { workers: 1, logger: log.logger });
      m.start();
      await until('a registered with its token', () => m.view().healthy, 20_000);
      expect(m.view().problem).toBeNull();
      await m.stop();
      const { 'token-file': _, ...without } = config;
      const bare = captureLogger();
      const n = await fleetMemberOf(without, { workers: 1, logger: bare.logger });
      n.start();
      await until(
        'the refusal is logged',
        () => bare.lines.some((l) => /no new job starts/.test(l.msg)),
        10_000,
      );
      expect(bare.lines.find((l) => /no new job starts/.test(l.msg))!.msg).toMatch(
        /^fleet: Consul refused PUT http:\/\/127\.0\.0\.1:\d+\/v1\/session\/create: 403 .*\(no ACL token was given: set fleet\.token-file\)/,
      );
      await n.stop();
      await writeFile(tokenFile, `${token}\n`, { mode: 0o644 });
      await chmod(tokenFile, 0o644);
      await expect(fleetMemberOf(config, { workers: 1, logger: bare.logger })).rejects.toThrow(
        /^fleet\.token-file .* is accessible to other users/,
      );
    } finally {
      await dir.cleanup();
      await agent.stop();
    }
  });
});
