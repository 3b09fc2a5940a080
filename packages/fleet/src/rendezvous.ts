import { createHash } from 'node:crypto';
import { labelsSatisfy } from '@backy/core';

/**
 * Which live server runs which job: weighted rendezvous (highest-random-weight) hashing. Every server
 * computes the same answer from the same list of live servers, without talking to the others; a server
 * that leaves moves only its own jobs (each to the server that scores next-highest for it), and one
 * that joins takes only the jobs it now scores highest for. The weight is the server's worker limit, so
 * a server with twice the workers gets about twice the jobs. Pure: no clock, no I/O.
 */

export interface FleetServer {
  name: string;
  labels: Record<string, string>;
  /** Its worker limit: its weight in the hashing. */
  workers: number;
}

/** A uniform number in (0, 1) from `server` and `job`: the same on every server and every run. */
export function unitHash(server: string, job: string): number {
  const digest = createHash('sha256').update(server).update('\0').update(job).digest();
  // 48 bits, moved off 0 and 1 so that the logarithm below is finite and non-zero.
  return (digest.readUIntBE(0, 6) + 0.5) / 2 ** 48;
}

/** The server's score for `job`: weight / -ln(u), the weighted form of rendezvous hashing. */
export function score(server: FleetServer, job: string): number {
  return Math.max(1, server.workers) / -Math.log(unitHash(server.name, job));
}

/**
 * The server that runs `job`: among `servers` whose labels satisfy the job's `wanted` labels, the one
 * with the highest score (ties: the lower name). Null when no live server may run it.
 */
export function ownerOf(
  job: string,
  wanted: Record<string, string> | undefined,
  servers: readonly FleetServer[],
): FleetServer | null {
  let best: FleetServer | null = null;
  let bestScore = -Infinity;
  for (const server of servers) {
    if (!labelsSatisfy(server.labels, wanted)) continue;
    const s = score(server, job);
    if (s > bestScore || (s === bestScore && best != null && server.name < best.name)) {
      best = server;
      bestScore = s;
    }
  }
  return best;
}
