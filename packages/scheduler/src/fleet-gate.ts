import type { Logger } from 'pino';
import { planJob } from './job-plan.js';
import type { JobRuntime } from './job-table.js';
import type { JobStatus } from './status-file.js';

/**
 * Fleet mode's hook into the scheduler (docs/fleet.md): which due jobs are this server's, and the lock
 * it must hold while one runs. `@backy/fleet` implements it over Consul; the scheduler knows nothing of
 * Consul. Without a gate every job is this server's, as before.
 */
export interface FleetGate {
  /** This server's name in the fleet. */
  readonly server: string;
  /**
   * Whether this server should run `job` now: it is the job's owner among the live servers whose
   * labels satisfy `labels`, and Consul is reachable. Synchronous: from the gate's current view.
   */
  owns(job: string, labels: Record<string, string> | undefined): boolean;
  /**
   * Takes the job's lock and raises its archive's fence (in `dir`) to the lock's token: null when it
   * cannot be had now (another server holds it, lock-delay, Consul out of reach).
   */
  claim(job: string, dir: string, labels: Record<string, string> | undefined): Promise<JobClaim | null>;
  /** Calls `listener` whenever the live servers or Consul's health change (the scheduler looks again). */
  onChange(listener: () => void): void;
  /** The job as the fleet sees it, for the status file and `backy check`. */
  describe(job: string, labels: Record<string, string> | undefined): FleetJobView;
}

export interface FleetJobView {
  state: 'assigned' | 'unassigned' | 'outage';
  owner: string | null;
  /** Who holds the job's lock now, or held it last. */
  server: string | null;
  problem: string | null;
}

/** The status rows with each job's fleet fields (status-file.ts) added. */
export function withFleetFields(
  rows: JobStatus[],
  gate: FleetGate,
  labelsOf: (job: string) => Record<string, string> | undefined,
): JobStatus[] {
  return rows.map((row) => {
    const view = gate.describe(row.job, labelsOf(row.job));
    return {
      ...row,
      fleet_state: view.state,
      fleet_owner: view.owner,
      fleet_server: view.server,
      ...(view.problem != null ? { fleet_problem: view.problem } : {}),
    };
  });
}

export interface JobClaim {
  /** The fencing token the backup must commit under (`backy backup --fence`). */
  token: number;
  /** Aborted when this server lost the lock (its session was invalidated): the backup is stopped. */
  lost: AbortSignal;
  /** Releases the lock; never throws. */
  release(): Promise<void>;
}

/** How soon a job whose fleet lock could not be had is looked at again. */
export const FLEET_RETRY_MS = 5000;

/**
 * Takes the fleet lock of a due job before it runs: null (the job waits again) when the lock cannot be
 * had, or when the archive, read again under the lock, shows that another server made this slot
 * meanwhile. The job holds its worker ('running') while this waits, so it is not started twice.
 */
export async function claimFleetJob(
  gate: FleetGate,
  job: JobRuntime,
  context: { now: () => number; reread: () => Promise<void>; log: Logger },
): Promise<JobClaim | null> {
  const { now, log } = context;
  job.state = 'running';
  let claim: JobClaim | null = null;
  try {
    claim = await gate.claim(job.name, job.dir, job.config.labels);
  } catch (error) {
    log.warn({ err: error }, "cannot take the job's fleet lock; trying again shortly");
  }
  if (claim != null) {
    try {
      await context.reread();
      const plan = planJob(job, now());
      if (job.runNow || (plan != null && plan.time <= now())) return claim;
      log.info('another fleet server made this slot meanwhile; nothing to do');
    } catch (error) {
      log.warn({ err: error }, 'cannot read the archive again under the fleet lock');
    }
    await claim.release();
    claim = null;
  } else job.busyRetryAt = now() + FLEET_RETRY_MS;
  job.state = job.failures > 0 ? 'failed' : 'waiting';
  job.plan = planJob(job, now());
  return null;
}
