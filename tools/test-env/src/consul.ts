/**
 * Throw-away Consul dev agents for the tests (`scripts/consul-test-agent`: loopback only, random ports,
 * state in a temporary directory), and raw HTTP against them that does not go through the code under
 * test. The binary is Debian bullseye's (`scripts/ci-install-consul`), or $CONSUL_BIN.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { packageOf } from './index.js';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const CONSUL_TEST_AGENT = join(REPO, 'scripts/consul-test-agent');

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The consul binary the script would use, or null. */
export function findConsul(): string | null {
  if (process.env.CONSUL_BIN) return isExecutable(process.env.CONSUL_BIN) ? process.env.CONSUL_BIN : null;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && isExecutable(join(dir, 'consul'))) return join(dir, 'consul');
  }
  const local = join(process.env.CONSUL_INSTALL_DIR ?? join(REPO, '.tools/consul'), 'root/usr/bin/consul');
  return isExecutable(local) ? local : null;
}

/** Why Consul tests cannot run here, or null. */
export function consulMissing(): string | null {
  return findConsul() == null
    ? `consul is not installed (Debian package ${packageOf('consul')}: run scripts/ci-install-consul, or set CONSUL_BIN)`
    : null;
}

export interface TestConsul {
  address: string;
  /** The management token (only with ACLs). */
  token: string | null;
  dir: string;
  stop(): Promise<void>;
}

/** Starts a dev agent (with `acl`, one enforcing ACLs, default deny); nothing is left running on failure. */
export async function startConsul(options: { acl?: boolean } = {}): Promise<TestConsul> {
  const dir = await mkdtemp(join(tmpdir(), 'backy-consul-'));
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    // HTTP port and the two after it (server, serf LAN) must be free.
    const port = 20000 + Math.floor(Math.random() * 20000);
    const args = ['start', dir, '--http-port', String(port), ...(options.acl ? ['--acl'] : [])];
    try {
      const { stdout } = await run(CONSUL_TEST_AGENT, args, { timeout: 60_000 });
      const env = Object.fromEntries(
        stdout
          .split('\n')
          .filter((line) => line.includes('='))
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
      );
      return {
        address: env.CONSUL_HTTP_ADDR!,
        token: env.CONSUL_HTTP_TOKEN ?? null,
        dir,
        async stop() {
          await run(CONSUL_TEST_AGENT, ['stop', dir], { timeout: 30_000 });
          await rm(dir, { recursive: true, force: true });
        },
      };
    } catch (error) {
      lastError = error;
      await run(CONSUL_TEST_AGENT, ['stop', dir], { timeout: 30_000 }).catch(() => {});
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

/** Raw HTTP against the agent, independent of the client under test. */
export async function consulHttp(
  consul: { address: string },
  method: string,
  path: string,
  options: { token?: string | null; body?: string } = {},
): Promise<{ status: number; text: string; json: () => unknown }> {
  const headers: Record<string, string> = {};
  if (options.token) headers['X-Consul-Token'] = options.token;
  const response = await fetch(`${consul.address}${path}`, {
    method,
    headers,
    body: options.body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  return { status: response.status, text, json: () => JSON.parse(text) };
}

/** Creates an ACL token whose policy allows `rules` (HCL); returns its SecretID. */
export async function createToken(
  consul: { address: string; token: string | null },
  name: string,
  rules: string,
): Promise<string> {
  const policy = await consulHttp(consul, 'PUT', '/v1/acl/policy', {
    token: consul.token,
    body: JSON.stringify({ Name: `${name}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`, Rules: rules }),
  });
  if (policy.status !== 200) throw new Error(`creating ACL policy: ${policy.status} ${policy.text}`);
  const token = await consulHttp(consul, 'PUT', '/v1/acl/token', {
    token: consul.token,
    body: JSON.stringify({ Description: name, Policies: [{ ID: (policy.json() as { ID: string }).ID }] }),
  });
  if (token.status !== 200) throw new Error(`creating ACL token: ${token.status} ${token.text}`);
  return (token.json() as { SecretID: string }).SecretID;
}

/** Three Consul servers on 127.0.0.1-3 (one port set for all), for fleet tests; see startConsulCluster. */
export interface TestConsulCluster {
  /** Each server's HTTP API, `http://127.0.0.I:PORT`. */
  addresses: string[];
  dir: string;
  /** Kills server `i` (0-2) with SIGKILL; its state stays for `restart`. */
  kill(i: number): Promise<void>;
  /** Starts server `i` again on its state. */
  restart(i: number): void;
  /** Resolves once some server names a leader (fails after `ms`). */
  waitForLeader(ms?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A three-server Consul cluster on loopback (TEST-ENVIRONMENT.md, "three servers on loopback"), with
 * Raft's fast timing (`raft_multiplier = 1`) and a minimum session TTL of 1 s so that failover tests take
 * seconds. One cluster per test file; nothing is left running after `stop`.
 */
export async function startConsulCluster(): Promise<TestConsulCluster> {
  // Random ports may be taken (another test's agent): a cluster without a leader is tried again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await tryConsulCluster();
    } catch (error) {
      if (attempt >= 3) throw error;
    }
  }
}

async function tryConsulCluster(): Promise<TestConsulCluster> {
  const consul = findConsul();
  if (consul == null) throw new Error(consulMissing() ?? 'no consul');
  const dir = await mkdtemp(join(tmpdir(), 'backy-consul-cluster-'));
  const base = 20000 + Math.floor(Math.random() * 2000) * 10;
  const children: Array<ChildProcess | null> = [null, null, null];
  const start = (i: number) => {
    const ip = `127.0.0.${i + 1}`;
    const join3 = [1, 2, 3].map((n) => `-retry-join=127.0.0.${n}:${base + 2}`);
    children[i] = spawn(
      consul,
      [
        'agent',
        '-server',
        '-bootstrap-expect=3',
        `-node=n${i + 1}`,
        `-bind=${ip}`,
        `-client=${ip}`,
        `-advertise=${ip}`,
        `-data-dir=${join(dir, `c${i + 1}`)}`,
        '-dns-port=-1',
        '-grpc-port=-1',
        `-http-port=${base}`,
        `-server-port=${base + 1}`,
        `-serf-lan-port=${base + 2}`,
        `-serf-wan-port=${base + 3}`,
        ...join3,
        '-log-level=warn',
        '-hcl',
        'performance { raft_multiplier = 1 }',
        '-hcl',
        'session_ttl_min = "1s"',
      ],
      { stdio: 'ignore' },
    );
  };
  const addresses = [1, 2, 3].map((n) => `http://127.0.0.${n}:${base}`);
  const kill = async (i: number) => {
    const child = children[i];
    children[i] = null;
    if (child == null || child.exitCode != null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  const cluster: TestConsulCluster = {
    addresses,
    dir,
    kill,
    restart: start,
    async waitForLeader(ms = 30_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        for (const address of addresses) {
          const leader = await consulHttp({ address }, 'GET', '/v1/status/leader').catch(() => null);
          if (leader?.status === 200 && leader.text.length > 2) return;
        }
        if (Date.now() > deadline) throw new Error(`the Consul cluster has no leader after ${ms} ms`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async stop() {
      await Promise.all([0, 1, 2].map(kill));
      await rm(dir, { recursive: true, force: true });
    },
  };
  for (const i of [0, 1, 2]) start(i);
  try {
    await cluster.waitForLeader(20_000);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
