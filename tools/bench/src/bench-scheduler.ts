// Benchmark (not a test) of `backy scheduler` with 1,000 jobs: daemon start-up time, `jobs` response
// time in the telnet shell, status-file write time and resident memory. Every archive gets 10 complete
// revisions (the newest one fresh), as after a while in production, so no job is due during the run.
// `pnpm bench:scheduler` builds it first. Targets from issue 3: start < 2 s, `jobs` < 200 ms, RSS < 200 MB.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { loadCentralConfig } from '@backy/core';
import { BACKY_BIN as BIN, REPO } from './paths.js';
import { prepareJobs } from './scheduler-jobs.js';

const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-scheduler');
const JOBS = Number(process.env.BENCH_JOBS ?? 1000);
const REVISIONS = Number(process.env.BENCH_REVISIONS ?? 10);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (n: number) => `${n.toFixed(0)} ms`;

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

interface Shell {
  send(line: string): Promise<{ ms: number; out: string }>;
  close(): void;
}

/** Connects, waits for the prompt; `send(line)` resolves with the time until the next prompt. */
function telnet(port: number): Promise<Shell> {
  return new Promise((res, rej) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let text = '';
    let waiter: ((out: string) => void) | null = null;
    socket.on('data', (d) => {
      text += d.toString();
      if (text.endsWith('backy> ') && waiter) {
        const w = waiter;
        waiter = null;
        w(text);
      }
    });
    socket.once('error', rej);
    waiter = () =>
      res({
        send(line) {
          text = '';
          const start = performance.now();
          return new Promise((done) => {
            waiter = (out) => done({ ms: performance.now() - start, out });
            socket.write(`${line}\r\n`);
          });
        },
        close: () => socket.destroy(),
      });
  });
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function main() {
  await rm(dir, { recursive: true, force: true });
  const base = join(dir, 'base');
  await mkdir(base, { recursive: true });
  const image = join(dir, 'tiny.img');
  await writeFile(image, randomBytes(64 * 1024));
  const port = await freePort();
  process.stdout.write(`preparing ${JOBS} jobs with ${REVISIONS} revisions each… `);
  const jobs = await prepareJobs(base, image, JOBS, REVISIONS);
  const conf = join(dir, 'backy.conf');
  await writeFile(
    conf,
    JSON.stringify({
      global: {
        'base-dir': base,
        'worker-limit': 4,
        'status-interval': 2,
        'telnet-addrs': '127.0.0.1',
        'telnet-port': port,
      },
      schedules: { default: { daily: { interval: '1d', keep: 9 }, weekly: { interval: '7d', keep: 5 } } },
      jobs,
    }),
  );
  console.log('done');

  const log = join(dir, 'daemon.log');
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, '-v', 'scheduler', '-c', conf, '-l', log], { stdio: 'ignore' });
  let shell: Shell;
  for (;;) {
    try {
      shell = await telnet(port);
      break;
    } catch {
      if (child.exitCode != null) throw new Error(`the daemon exited with ${child.exitCode}; see ${log}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  const startup = performance.now() - t0;
  const rssStart = await rssMiB(child.pid!);

  const times: number[] = [];
  let out = '';
  for (let i = 0; i < 7; i++) {
    const r = await shell.send('jobs');
    times.push(r.ms);
    out = r.out;
  }
  if (!out.includes(`${JOBS} jobs shown`)) throw new Error(`unexpected jobs output: ${out.slice(-200)}`);
  const filtered = await shell.send('jobs ^vm00[0-4]');
  const status = await shell.send('status');
  await new Promise((r) => setTimeout(r, 7000));
  const rssLater = await rssMiB(child.pid!);
  shell.close();
  child.kill('SIGTERM');
  const stopStart = performance.now();
  await new Promise((r) => child.once('exit', r));
  const stop = performance.now() - stopStart;

  const lines = (await readFile(log, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; ms?: number });
  const started = lines.find((l) => l.msg === 'scheduler started');
  const writesMs = lines.filter((l) => l.msg === 'status file written').map((l) => l.ms!);
  const backups = lines.filter((l) => l.msg === 'backup started').length;

  console.log(`jobs:                      ${JOBS} (${REVISIONS} revisions each)`);
  console.log(
    `start-up (spawn → prompt): ${ms(startup)}   (scheduler init incl. reading all archives: ${started?.ms} ms)`,
  );
  console.log(
    `'jobs' (${JOBS} rows):        median ${ms(median(times))}, max ${ms(Math.max(...times))}, first ${ms(times[0]!)}`,
  );
  console.log(`'jobs ^vm00[0-4]':         ${ms(filtered.ms)}`);
  console.log(`'status':                  ${ms(status.ms)}`);
  console.log(
    `status-file write:         first ${writesMs[0]} ms (cold), then median ${median(writesMs.slice(1))} ms over ${writesMs.length - 1} writes`,
  );
  console.log(
    `RSS:                       ${rssStart.toFixed(0)} MiB after start-up, ${rssLater.toFixed(0)} MiB after ~10 s`,
  );
  console.log(`SIGTERM → exit:            ${ms(stop)} (exit code ${child.exitCode})`);
  console.log(`backups started meanwhile: ${backups}`);
  await benchConfigLoad();
  if (!process.env.BENCH_KEEP) await rm(dir, { recursive: true, force: true });
}

/**
 * Loading a central config of many jobs (YAML as people write it, no archives): issue 12 measured
 * 5k jobs 0.8 s, 20k 4.3 s, 40k 13.4 s (yaml's pairwise duplicate-key check); it must grow linearly.
 */
async function benchConfigLoad(): Promise<void> {
  for (const jobs of [5_000, 40_000]) {
    const lines = ['schedules:', '  default:', '    daily: {interval: 1d, keep: 9}', 'jobs:'];
    for (let i = 0; i < jobs; i++)
      lines.push(
        `  vm${String(i).padStart(5, '0')}.example.com:`,
        '    schedule: default',
        '    source:',
        '      type: file',
        `      filename: /srv/vm/${i}.img`,
      );
    const path = join(dir, `backy-${jobs}.conf`);
    const text = `${lines.join('\n')}\n`;
    await writeFile(path, text);
    const started = performance.now();
    await loadCentralConfig(path);
    console.log(
      `config load, ${String(jobs).padStart(6)} jobs: ${ms(performance.now() - started)} (${(text.length / 1024 / 1024).toFixed(1)} MiB)`,
    );
  }
}

await main();
