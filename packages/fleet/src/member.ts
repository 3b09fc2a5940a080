import { mkdir } from 'node:fs/promises';
import { type ConsulClient, ConsulError } from '@backy/consul';
import { raiseFence } from '@backy/core';
import type { Logger } from 'pino';
import { type FleetServer, ownerOf } from './rendezvous.js';

/**
 * This server as a member of the fleet (docs/fleet.md). It keeps a Consul session (TTL, lock-delay,
 * renewed every TTL/3) and, under it, the lock on `PREFIX/servers/NAME` holding its name, labels and
 * worker limit: the live servers are the keys of that folder with a session. A blocking query on the
 * fleet's folder keeps the view current. A job is this server's when rendezvous hashing over the live
 * servers that satisfy the job's labels picks it; it then takes `PREFIX/jobs/JOB` with its session,
 * raises the archive's fence to the lock's ModifyIndex, and holds the lock until the run is over.
 * While Consul cannot be reached (or has no leader) no job is this server's: no new job starts.
 */

export interface FleetMemberOptions {
  client: ConsulClient;
  server: string;
  labels: Record<string, string>;
  /** This server's worker limit: its weight in the hashing. */
  workers: number;
  ttlSeconds: number;
  lockDelaySeconds: number;
  /** The fleet's KV folder (`backy/fleet`). */
  prefix: string;
  logger: Logger;
}

/** A job's lock as Consul holds it: who has (or last had) it. */
export interface JobHolder {
  job: string;
  server: string;
  /** True while the lock is held (the job runs there now). */
  running: boolean;
  /** When it was taken (ms), and when last released (ms) if it is not held. */
  since: number;
  ended: number | null;
}

/** The fleet as this server sees it, for `status` and `check`. */
export interface FleetView {
  server: string;
  /** Consul reachable, with a leader, and this server registered. */
  healthy: boolean;
  /** Why not, in one line. */
  problem: string | null;
  servers: FleetServer[];
  holders: JobHolder[];
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

export class FleetMember {
  readonly server: string;
  private readonly o: FleetMemberOptions;
  private readonly log: Logger;
  private session: string | null = null;
  private problem: string | null = NOT_YET;
  private servers: FleetServer[] = [];
  private holders: JobHolder[] = [];
  private holderOf = new Map<string, JobHolder>();
  private readonly claims = new Map<string, AbortController>();
  private readonly listeners: Array<() => void> = [];
  private readonly stopper = new AbortController();
  private loops: Promise<void>[] = [];
  private settledAt = Infinity;
  /** When the session was last renewed (or made). */
  private renewedAt = 0;

  constructor(options: FleetMemberOptions) {
    this.o = options;
    this.server = options.server;
    this.log = options.logger.child({ fleet: options.server });
  }

  /** Starts keeping the session and watching the fleet; registration is tried until it succeeds. */
  start(): void {
    this.loops = [this.keepSession(), this.watch()];
  }

  /**
   * Stops renewing and watching. By default it also destroys the session, so its locks go at once (the
   * jobs move without waiting for the TTL); `leave: false` leaves the session to expire, as a crashed
   * server's does (tests).
   */
  async stop(options: { leave?: boolean } = {}): Promise<void> {
    this.stopper.abort();
    await Promise.allSettled(this.loops);
    if (this.session != null && options.leave !== false)
      await this.o.client.destroySession(this.session).catch((error: unknown) => {
        this.log.warn({ err: error }, 'cannot destroy the fleet session; Consul lets it expire');
      });
    this.session = null;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  view(): FleetView {
    return {
      server: this.server,
      healthy: this.problem == null,
      problem: this.problem,
      servers: [...this.servers],
      holders: [...this.holders],
    };
  }

  owns(job: string, labels: Record<string, string> | undefined): boolean {
    // Servers started together first see each other: no job is taken in the first TTL after joining.
    if (this.problem != null || Date.now() < this.settledAt) return false;
    return ownerOf(job, labels, this.servers)?.name === this.server;
  }

  /** The job as this server sees the fleet (the scheduler's FleetGate.describe). */
  describe(job: string, labels: Record<string, string> | undefined) {
    const owner = ownerOf(job, labels, this.servers)?.name ?? null;
    const holder = this.holderOf.get(job);
    const state = this.problem != null ? 'outage' : owner == null ? 'unassigned' : 'assigned';
    return { state, owner, server: holder?.server ?? null, problem: this.problem } as const;
  }

  /** Whether the view is usable and lists this server (tests wait for it). */
  get ready(): boolean {
    const settled = Date.now() >= this.settledAt;
    return settled && this.problem == null && this.servers.some((s) => s.name === this.server);
  }

  async claim(
    job: string,
    dir: string,
    labels: Record<string, string> | undefined,
  ): Promise<{ token: number; lost: AbortSignal; release(): Promise<void> } | null> {
    const session = this.session;
    if (session == null || !this.owns(job, labels)) return null;
    const key = `${this.o.prefix}/jobs/${job}`;
    const since = Date.now();
    if (!(await this.o.client.acquire(key, session, JSON.stringify({ server: this.server, since }))))
      return null;
    const controller = new AbortController();
    this.claims.set(job, controller);
    const release = async () => {
      if (this.claims.get(job) === controller) this.claims.delete(job);
      const value = JSON.stringify({ server: this.server, since, ended: Date.now() });
      await this.o.client.release(key, session, value).catch((error: unknown) => {
        this.log.warn({ job, err: error }, "cannot release the job's fleet lock; it goes with the session");
      });
    };
    try {
      // The ModifyIndex of our acquire: every later holder's is higher (Consul's Raft index).
      const entry = await this.o.client.get(key);
      if (entry?.session !== session) throw new Error(`the lock on ${key} was lost right after it was taken`);
      await mkdir(dir, { recursive: true, mode: 0o750 });
      await raiseFence(dir, entry.modifyIndex, this.server);
      this.log.info({ job, token: entry.modifyIndex }, 'job taken');
      return { token: entry.modifyIndex, lost: controller.signal, release };
    } catch (error) {
      await release();
      throw error;
    }
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /** Healthy again, or not: one log line per change, not one per failed request. */
  private setProblem(problem: string | null): void {
    if (problem === this.problem) return;
    const was = this.problem;
    this.problem = problem;
    if (problem == null)
      this.log.info({ server: this.server }, 'fleet: Consul reachable and registered; jobs start again');
    else if (was == null || was === NOT_YET)
      this.log.error(
        { server: this.server },
        `fleet: ${problem}; no new job starts until Consul answers again (running ones go on, fenced)`,
      );
    this.changed();
  }

  /** Registers, then renews every TTL/3; a session Consul dropped costs every lock and is made anew. */
  private async keepSession(): Promise<void> {
    const signal = this.stopper.signal;
    while (!signal.aborted) {
      try {
        if (this.session == null) await this.register();
        else if (!(await this.o.client.renewSession(this.session))) {
          this.session = null;
          this.loseAll("this server's Consul session was invalidated (it was not renewed within its TTL)");
          continue;
        }
        this.setProblem(null);
        this.renewedAt = Date.now();
      } catch (error) {
        // A failed renewal while the session still has half its TTL left (a Consul server dying, a
        // leader election) is tried again in a second; only one that goes on is an outage.
        const ttlMs = this.o.ttlSeconds * 1000;
        if (this.session != null && Date.now() - this.renewedAt < ttlMs / 2) {
          this.log.debug({ err: error }, 'fleet: renewing the session failed; trying again');
          await sleep(1000, signal);
          continue;
        }
        this.setProblem(describe(error));
      }
      await sleep((this.o.ttlSeconds * 1000) / 3, signal);
    }
  }

  private async register(): Promise<void> {
    const { client } = this.o;
    const session = await client.createSession({
      name: `backy fleet ${this.server}`,
      ttlSeconds: this.o.ttlSeconds,
      lockDelaySeconds: this.o.lockDelaySeconds,
    });
    const me = { name: this.server, labels: this.o.labels, workers: this.o.workers };
    const key = `${this.o.prefix}/servers/${this.server}`;
    if (!(await client.acquire(key, session, JSON.stringify(me)))) {
      await client.destroySession(session).catch(() => {});
      throw new ConsulError(
        'http',
        `another live server is registered as ${JSON.stringify(this.server)} in ${key} (or its lock-delay runs): give each server its own fleet.server`,
      );
    }
    this.session = session;
    if (this.settledAt === Infinity) {
      this.settledAt = Date.now() + this.o.ttlSeconds * 1000;
      setTimeout(() => this.changed(), this.o.ttlSeconds * 1000 + 10).unref();
    }
    this.log.info({ session, labels: this.o.labels, workers: this.o.workers }, 'fleet: registered');
  }

  /** Every lock this server held is gone: the backups under them are stopped (and fenced anyway). */
  private loseAll(reason: string): void {
    for (const [job, controller] of this.claims) {
      this.log.error(
        { job },
        `fleet: lost the job's lock: ${reason}; its backup is stopped and cannot commit`,
      );
      controller.abort(new Error(reason));
    }
    this.claims.clear();
  }

  /**
   * Keeps `servers` current with a blocking query on the servers' folder (it changes only when servers
   * come and go), and `holders` with a stale read of the jobs' folder at most every HOLDERS_MS (every
   * job run changes it: a blocking query on it would wake every server for every run of every job).
   */
  private async watch(): Promise<void> {
    const signal = this.stopper.signal;
    let index = 0;
    let holdersAt = 0;
    while (!signal.aborted) {
      try {
        // Stale reads answer without a leader: the view stays, but `problem` stops new jobs anyway.
        const answer = await this.o.client.list(`${this.o.prefix}/servers/`, {
          stale: true,
          ...(index > 0 ? { index, waitMs: this.o.ttlSeconds * 1000 } : {}),
          signal,
        });
        // An index that went back (Consul restored from a snapshot) starts over.
        index = answer.index < index ? 0 : answer.index;
        this.absorbServers(answer.entries);
        if (Date.now() - holdersAt >= HOLDERS_MS) {
          holdersAt = Date.now();
          this.absorbHolders(
            (await this.o.client.list(`${this.o.prefix}/jobs/`, { stale: true, signal })).entries,
          );
        }
      } catch (error) {
        if (signal.aborted) return;
        this.log.debug({ err: error }, 'fleet watch failed; trying again');
        await sleep(1000, signal);
      }
    }
  }

  private absorbServers(entries: Entry[]): void {
    const servers: FleetServer[] = [];
    for (const entry of entries) {
      const value = parseJson(entry.value);
      if (entry.session == null || value == null) continue;
      const labels = (value.labels ?? {}) as Record<string, string>;
      servers.push({ name: String(value.name), labels, workers: Number(value.workers) || 1 });
    }
    const names = (list: FleetServer[]) => JSON.stringify(list.map((s) => [s.name, s.labels, s.workers]));
    servers.sort((a, b) => (a.name < b.name ? -1 : 1));
    if (names(servers) === names(this.servers)) return;
    this.servers = servers;
    this.log.info({ servers: servers.map((s) => s.name) }, 'fleet: live servers changed');
    this.changed();
  }

  private absorbHolders(entries: Entry[]): void {
    const holders: JobHolder[] = [];
    for (const entry of entries) {
      const value = parseJson(entry.value);
      if (value == null) continue;
      holders.push({
        job: entry.key.slice(this.o.prefix.length + '/jobs/'.length),
        server: String(value.server),
        running: entry.session != null,
        since: Number(value.since) || 0,
        ended: typeof value.ended === 'number' ? value.ended : null,
      });
    }
    this.holders = holders;
    this.holderOf = new Map(holders.map((h) => [h.job, h]));
  }
}

/** The problem before the first registration: not logged as an outage, but the first failure is. */
const NOT_YET = 'not registered with Consul yet';

type Entry = { key: string; value: Buffer | null; session: string | null };

/** How often the holders of the jobs' locks are read again (for the status file and check). */
const HOLDERS_MS = 10_000;

function parseJson(value: Buffer | null): Record<string, unknown> | null {
  if (value == null) return null;
  try {
    const parsed = JSON.parse(value.toString('utf8'));
    return parsed != null && typeof parsed === 'object' ? parsed : null;
  } catch {
    return null;
  }
}

function describe(error: unknown): string {
  if (error instanceof ConsulError) return error.message;
  return `Consul failed: ${(error as Error)?.message ?? String(error)}`;
}
