// Simulation bench (not a test) of fleet mode's scheduling (docs/fleet.md): a fake clock, 100 servers,
// 10,000 daily jobs, one week, servers crashing and stalling at random. It runs the real assignment
// (`ownerOf` of @backy/fleet: weighted rendezvous hashing over the servers in Consul's view, with
// labels), models Consul's session timing (a dead or stalled server leaves the view TTL to 2×TTL after
// its last renewal, its locks stay untaken for the lock-delay after that), the workers of each server,
// the scheduler's catch-up (a run is due at the first slot after the last one), and the fence (a
// stalled server's backup that finishes after another server took the job is refused at its commit).
// It reports slots missed, commits the fence refused (duplicates prevented) and the load spread.
// `pnpm bench:fleet`; BENCH_SERVERS, BENCH_JOBS, BENCH_DAYS, BENCH_SEED, BENCH_TTL, BENCH_LOCK_DELAY.
import { type FleetServer, ownerOf, score } from '@backy/fleet';
import { EventQueue, mulberry32 } from './bench-fleet-queue.js';

const SERVERS = Number(process.env.BENCH_SERVERS ?? 100);
const JOBS = Number(process.env.BENCH_JOBS ?? 10_000);
const DAYS = Number(process.env.BENCH_DAYS ?? 7);
const TTL = Number(process.env.BENCH_TTL ?? 15) * 1000;
const LOCK_DELAY = Number(process.env.BENCH_LOCK_DELAY ?? 15) * 1000;
const WORKERS = 4;
const INTERVAL = 86_400_000;
const MIN = 60_000;
const HOUR = 60 * MIN;
/** Crashes per server per day, and how long a crashed server stays down. */
const CRASH_RATE = 1 / 3;
const DOWN = [10 * MIN, 4 * HOUR] as const;
/** Stalls (a pause or partition past the TTL: SIGSTOP, swap storm) per server per day, and their length. */
const STALL_RATE = 1 / 5;
const STALL = [30_000, 10 * MIN] as const;

const random = mulberry32(Number(process.env.BENCH_SEED ?? 1));
const between = ([lo, hi]: readonly [number, number]) => lo + random() * (hi - lo);
const exponential = (perDay: number) => (-Math.log(1 - random()) / perDay) * 86_400_000;

interface Server extends FleetServer {
  up: boolean;
  stalled: boolean;
  /** In Consul's view (its session valid and registered). */
  inView: boolean;
  epoch: number;
  running: Set<number>;
  queue: number[];
  ran: number;
}
interface Job {
  name: string;
  labels: Record<string, string> | undefined;
  offset: number;
  /** The slot the pending run serves, or -1 when none is due. */
  dueSlot: number;
  token: number;
  lastCommitSlot: number;
}
interface Run {
  job: number;
  server: number;
  token: number;
  slot: number;
  remaining: number;
  started: number;
}

const servers: Server[] = Array.from({ length: SERVERS }, (_, i) => ({
  name: `s${String(i).padStart(3, '0')}`,
  labels: { site: i % 2 === 0 ? 'a' : 'b' },
  workers: WORKERS,
  up: true,
  stalled: false,
  inView: true,
  epoch: 0,
  running: new Set(),
  queue: [],
  ran: 0,
}));
const jobs: Job[] = Array.from({ length: JOBS }, (_, i) => ({
  name: `vm${i}`,
  // One job in five may run at one site only (its Ceph cluster).
  labels: i % 5 === 0 ? { site: i % 10 === 0 ? 'a' : 'b' } : undefined,
  offset: Math.floor(random() * INTERVAL),
  dueSlot: -1,
  token: 0,
  lastCommitSlot: -1,
}));
const runs = new Map<number, Run>();
/** Jobs with a slot due and not yet committed. */
const pending = new Set<number>();
let nextRun = 1;
let token = 0;
const stats = {
  slots: 0,
  committed: 0,
  late: 0,
  missed: 0,
  fenced: 0,
  lost: 0,
  maxDelayMs: 0,
  sumDelayMs: 0,
};
const q = new EventQueue();
const END = DAYS * 86_400_000;

// Scores computed once: the simulation asks for owners millions of times.
const scores = jobs.map((job) => Float64Array.from(servers, (s) => score(s, job.name)));
function owner(j: number): number {
  let best = -1;
  for (let s = 0; s < SERVERS; s++) {
    const server = servers[s]!;
    if (!server.inView || (jobs[j]!.labels != null && server.labels.site !== jobs[j]!.labels!.site)) continue;
    if (best < 0 || scores[j]![s]! > scores[j]![best]!) best = s;
  }
  return best;
}

/** A job's slot becomes due: the owner in Consul's view takes it, if it is alive to do so. */
function due(j: number, now: number): void {
  const job = jobs[j]!;
  if (job.dueSlot < 0) return;
  const s = owner(j);
  if (s < 0) return; // unassigned: looked at again when the view changes
  const server = servers[s]!;
  // A dead or stalled server still in the view does nothing; the job moves once it leaves the view.
  if (!server.up || server.stalled) return;
  if ([...server.running].some((r) => runs.get(r)!.job === j) || server.queue.includes(j)) return;
  server.queue.push(j);
  startWork(s, now);
}

function startWork(s: number, now: number): void {
  const server = servers[s]!;
  while (server.running.size < WORKERS && server.queue.length > 0) {
    const j = server.queue.shift()!;
    const job = jobs[j]!;
    if (job.dueSlot < 0 || owner(j) !== s) continue;
    job.token = ++token; // the lock's ModifyIndex, raised into the archive's fence
    const id = nextRun++;
    const run: Run = {
      job: j,
      server: s,
      token: job.token,
      slot: job.dueSlot,
      remaining: between([5 * MIN, 40 * MIN]),
      started: now,
    };
    runs.set(id, run);
    server.running.add(id);
    const end = now + run.remaining;
    q.push(end, () => finish(id, end));
  }
}

function finish(id: number, now: number): void {
  const run = runs.get(id);
  if (run == null || run.started + run.remaining !== now) return; // lost, or shifted by a stall
  const server = servers[run.server]!;
  if (server.stalled) return; // finishes after the stall (see stallEnd)
  runs.delete(id);
  server.running.delete(id);
  const job = jobs[run.job]!;
  if (job.token !== run.token) stats.fenced++;
  else if (run.slot > job.lastCommitSlot) {
    stats.committed++;
    server.ran++;
    const slotStart = run.slot * INTERVAL + job.offset;
    const delay = run.started - slotStart;
    stats.sumDelayMs += delay;
    stats.maxDelayMs = Math.max(stats.maxDelayMs, delay);
    // Started past its slot: the scheduler's next due is the first slot after this start.
    const next = Math.floor((run.started - job.offset) / INTERVAL) + 1;
    if (next - 1 > run.slot) stats.late++;
    stats.missed += next - 1 - run.slot;
    job.lastCommitSlot = next - 1;
    job.dueSlot = -1;
    pending.delete(run.job);
    scheduleSlot(run.job, next);
  }
  startWork(run.server, now);
}

function scheduleSlot(j: number, slot: number): void {
  const at = slot * INTERVAL + jobs[j]!.offset;
  if (at >= END) return;
  q.push(at, () => {
    jobs[j]!.dueSlot = slot;
    pending.add(j);
    stats.slots++;
    due(j, at);
  });
}

/** The pending jobs are looked at again (the view changed). */
function reconsider(at: number): void {
  for (const j of pending) due(j, at);
}

/** The server leaves Consul's view `after` its last renewal; its jobs move after the lock-delay. */
function leaveView(s: number, now: number, after: number): void {
  const server = servers[s]!;
  const epoch = server.epoch;
  q.push(now + after, () => {
    if (server.epoch !== epoch) return;
    server.inView = false;
    q.push(q.now + LOCK_DELAY, () => reconsider(q.now));
  });
}

function crash(s: number, now: number): void {
  const server = servers[s]!;
  if (!server.up) return;
  server.up = false;
  server.epoch++;
  for (const id of server.running) {
    runs.delete(id);
    stats.lost++;
  }
  server.running.clear();
  server.queue = [];
  leaveView(s, now, between([TTL, 2 * TTL]));
  q.push(now + between(DOWN), () => {
    rejoin(s, q.now);
    q.push(q.now + exponential(CRASH_RATE), () => crash(s, q.now));
  });
}

function rejoin(s: number, now: number): void {
  const server = servers[s]!;
  server.up = true;
  server.stalled = false;
  server.epoch++;
  // Registered anew, it takes jobs one TTL later (member.ts).
  q.push(now + TTL, () => {
    server.inView = true;
    reconsider(q.now);
  });
}

function stall(s: number, now: number): void {
  const server = servers[s]!;
  q.push(now + exponential(STALL_RATE), () => stall(s, q.now));
  if (!server.up || server.stalled) return;
  server.stalled = true;
  const length = between(STALL);
  const epoch = server.epoch;
  // Consul drops the session TTL to 2×TTL after the last renewal, if the stall lasts that long.
  const invalidAfter = between([TTL, 2 * TTL]);
  if (length > invalidAfter) leaveView(s, now, invalidAfter);
  q.push(now + length, () => {
    if (server.epoch !== epoch || !server.up) return;
    server.stalled = false;
    for (const id of server.running) {
      const run = runs.get(id)!;
      run.remaining += length;
      q.push(run.started + run.remaining, () => finish(id, run.started + run.remaining));
    }
    if (length > invalidAfter) rejoin(s, q.now);
    else startWork(s, q.now);
  });
}

const started = performance.now();
for (let s = 0; s < SERVERS; s++) {
  q.push(exponential(CRASH_RATE), () => crash(s, q.now));
  q.push(exponential(STALL_RATE), () => stall(s, q.now));
}
for (let j = 0; j < JOBS; j++) scheduleSlot(j, 0);
// The simulation's owner is ownerOf's: checked on a sample.
for (let j = 0; j < 200; j++)
  if (servers[owner(j)]!.name !== ownerOf(jobs[j]!.name, jobs[j]!.labels, servers)!.name)
    throw new Error('owner differs from ownerOf');
q.run(END + 2 * HOUR);

const ran = servers.map((s) => s.ran);
const mean = ran.reduce((a, b) => a + b, 0) / SERVERS;
const assigned = new Array<number>(SERVERS).fill(0);
for (const s of servers) s.inView = true;
for (let j = 0; j < JOBS; j++) assigned[owner(j)]!++;
const fmt = (ms: number) => `${(ms / MIN).toFixed(1)} min`;
console.log(
  `fleet simulation: ${SERVERS} servers (${WORKERS} workers each, 2 sites), ${JOBS} daily jobs (1 in 5 bound to a site), ${DAYS} days`,
);
console.log(
  `  Consul: TTL ${TTL / 1000} s, lock-delay ${LOCK_DELAY / 1000} s; crashes ${CRASH_RATE.toFixed(2)}/server/day (down ${fmt(DOWN[0])}-${fmt(DOWN[1])}), stalls ${STALL_RATE.toFixed(2)}/server/day (${STALL[0] / 1000} s-${fmt(STALL[1])})`,
);
console.log(
  `  slots due: ${stats.slots}; committed: ${stats.committed}; runs lost in crashes (redone elsewhere): ${stats.lost}`,
);
console.log(
  `  slots missed (a catch-up run started after the next slot began and served both): ${stats.missed}; late runs: ${stats.late}`,
);
console.log(
  `  delay from slot start to backup start: mean ${fmt(stats.sumDelayMs / Math.max(1, stats.committed))}, max ${fmt(stats.maxDelayMs)}`,
);
console.log(
  `  duplicate commits prevented by the fence (a stalled server's backup finishing after another took the job): ${stats.fenced}`,
);
console.log(
  `  load: backups per server over the run max ${Math.max(...ran)} / mean ${mean.toFixed(1)} = ${(Math.max(...ran) / mean).toFixed(2)}; jobs assigned with all servers up: max ${Math.max(...assigned)} / mean ${(JOBS / SERVERS).toFixed(1)} = ${(Math.max(...assigned) / (JOBS / SERVERS)).toFixed(2)}`,
);
console.log(`  simulated in ${((performance.now() - started) / 1000).toFixed(1)} s`);
