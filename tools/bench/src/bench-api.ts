// Benchmark (not a test) of the daemon's HTTP API: the real `backy scheduler` with 1,000 jobs (archives
// with a fresh revision each, so none is due), requests/s of `GET /v1/status` and `GET /metrics`, and the
// daemon's CPU and RSS while idle with the API on and with it off. `pnpm bench:api` builds it first;
// BENCH_JOBS, BENCH_SECONDS (load per endpoint, default 10), BENCH_IDLE_SECONDS (default 10) and
// BENCH_CONCURRENCY (default 8) scale it.
//
// The load is a loop of keep-alive requests from this process (node:http, BENCH_CONCURRENCY in flight)
// rather than autocannon: no dependency for one number, and at the rates a daemon on a shared 2-core
// host answers (hundreds a second, each a JSON of 1,000 jobs) the client is not what limits them.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { BACKY_BIN as BIN, REPO } from './paths.js';
import { prepareJobs } from './scheduler-jobs.js';

const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-api');
const JOBS = Number(process.env.BENCH_JOBS ?? 1000);
const LOAD_SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 10);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const TOKEN = 'bench-token-0123456789';
const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] ?? Number.NaN;

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => res(port));
    });
  });
}

/** CPU seconds (user + system) the process has used, from /proc/PID/stat. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command's `)`: state is the first, utime the 12th, stime the 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/** The daemon's CPU (% of one core) over IDLE_SECONDS, and its RSS at the end. */
async function idle(pid: number): Promise<{ cpu: number; rss: number }> {
  const cpu0 = await cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(IDLE_SECONDS * 1000);
  const cpu = (100 * ((await cpuSeconds(pid)) - cpu0)) / ((performance.now() - t0) / 1000);
  return { cpu, rss: await rssMiB(pid) };
}

/** One GET; resolves with the status and the body's length. */
function get(agent: Agent, port: number, path: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, agent, headers: { authorization: `Bearer ${TOKEN}` } },
      (res) => {
        let bytes = 0;
        res.on('data', (d: Buffer) => {
          bytes += d.length;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** CONCURRENCY keep-alive loops of GET `path` for LOAD_SECONDS: requests/s and latencies. */
async function load(port: number, path: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const latencies: number[] = [];
  let bytes = 0;
  const end = performance.now() + LOAD_SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        const start = performance.now();
        const r = await get(agent, port, path);
        if (r.status !== 200) throw new Error(`${path} answered ${r.status}`);
        latencies.push(performance.now() - start);
        bytes = r.bytes;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  return {
    rps: latencies.length / seconds,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    bytes,
  };
}

async function writeConfig(base: string, jobs: Record<string, unknown>, apiPort: number | null) {
  const conf = join(dir, apiPort == null ? 'backy-no-api.conf' : 'backy-api.conf');
  await writeFile(
    conf,
    JSON.stringify({
      ...(apiPort == null
        ? {}
        : {
            api: { listen: `127.0.0.1:${apiPort}`, tokens: [{ name: 'bench', role: 'read', value: TOKEN }] },
          }),
      global: {
        'base-dir': base,
        'worker-limit': 4,
        'telnet-addrs': '127.0.0.1',
        'telnet-port': await freePort(),
      },
      schedules: { default: { daily: { interval: '1d', keep: 9 }, weekly: { interval: '7d', keep: 5 } } },
      jobs,
    }),
  );
  return conf;
}

/** Starts the daemon and waits until it has written its status file (it has read every archive). */
async function startDaemon(conf: string, base: string, log: string): Promise<ChildProcess> {
  await rm(join(base, 'status'), { force: true });
  const child = spawn(process.execPath, [BIN, 'scheduler', '-c', conf, '-l', log], { stdio: 'ignore' });
  for (;;) {
    if (child.exitCode != null) throw new Error(`the daemon exited with ${child.exitCode}; see ${log}`);
    if ((await readFile(join(base, 'status'), 'utf8').catch(() => '')).length > 0) break;
    await sleep(50);
  }
  // The first minutes of a daemon are not idle: let start-up's garbage be collected first.
  await sleep(3000);
  return child;
}

async function stopDaemon(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  if (child.exitCode == null) await new Promise((r) => child.once('exit', r));
}

async function main() {
  await rm(dir, { recursive: true, force: true });
  const base = join(dir, 'base');
  await mkdir(base, { recursive: true });
  const image = join(dir, 'tiny.img');
  await writeFile(image, randomBytes(64 * 1024));
  process.stdout.write(`preparing ${JOBS} jobs… `);
  const jobs = await prepareJobs(base, image, JOBS, 1);
  console.log('done');
  const apiPort = await freePort();

  const withApi = await startDaemon(await writeConfig(base, jobs, apiPort), base, join(dir, 'api.log'));
  const idleOn = await idle(withApi.pid!);
  const status = await load(apiPort, '/v1/status');
  const metrics = await load(apiPort, '/metrics');
  const rssAfterLoad = await rssMiB(withApi.pid!);
  await stopDaemon(withApi);

  const without = await startDaemon(await writeConfig(base, jobs, null), base, join(dir, 'no-api.log'));
  const idleOff = await idle(without.pid!);
  await stopDaemon(without);

  const row = (name: string, r: Awaited<ReturnType<typeof load>>) =>
    console.log(
      `${name.padEnd(12)} ${r.rps.toFixed(0).padStart(6)} req/s   p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms   (${(r.bytes / 1024).toFixed(0)} KiB each)`,
    );
  console.log(`jobs: ${JOBS}; load: ${CONCURRENCY} keep-alive connections, ${LOAD_SECONDS} s per endpoint`);
  row('/v1/status', status);
  row('/metrics', metrics);
  console.log(
    `idle ${IDLE_SECONDS} s, API on:  CPU ${idleOn.cpu.toFixed(2)} % of a core, RSS ${idleOn.rss.toFixed(0)} MiB (${rssAfterLoad.toFixed(0)} MiB after the load)`,
  );
  console.log(
    `idle ${IDLE_SECONDS} s, API off: CPU ${idleOff.cpu.toFixed(2)} % of a core, RSS ${idleOff.rss.toFixed(0)} MiB`,
  );
  if (!process.env.BENCH_KEEP) await rm(dir, { recursive: true, force: true });
}

await main();
