import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ConsulClient, ConsulError, type RequestOptions } from '@backy/consul';
import { SNAPSHOT_PREFIX as BACKY_SNAPSHOT_PREFIX } from '@backy/source-ceph-rbd';
import type { Logger } from 'pino';

/**
 * The Flying Circus snapshot handshake.
 *
 * backy writes `snapshot/<uuid>` = `{"vm": VM, "snapshot": NAME}` into Consul's KV store. The agent on the
 * VM's host watches the `snapshot/` prefix; when it sees a request for a VM that runs on its host and the
 * snapshot does not exist yet, it freezes the guest's file systems, creates the RBD snapshot and thaws.
 * The agent never answers through Consul and never deletes requests: backy learns of success only by
 * seeing the snapshot appear in Ceph, and must remove the request itself (an old request would otherwise
 * be acted upon again by every later watch event).
 */

/** The Consul KV prefix the host agents watch for snapshot requests. */
export const REQUEST_PREFIX = 'snapshot/';

export type SnapshotMethod =
  /** The host agent made it with the guest frozen: file-system consistent. */
  | 'agent'
  /** backy made it directly (crash consistent), after the agent did not within the time limit or Consul failed. */
  | 'direct';

export interface SnapshotOutcome {
  method: SnapshotMethod;
  /** Why the snapshot was made directly; absent for `agent`. */
  reason?: 'timeout' | 'consul-unreachable' | 'consul-timeout' | 'consul-forbidden' | 'consul-error';
  /** Milliseconds from the request until the snapshot existed. */
  elapsedMs: number;
  /** The request key written, if writing it succeeded. */
  requestKey?: string;
}

export interface SnapshotRequestOptions {
  consul: ConsulClient;
  vm: string;
  /** The snapshot name, `backy-<revision id>`. */
  snapshot: string;
  /** How long to wait for the agent's snapshot before making it directly. */
  timeoutMs: number;
  /** Whether the snapshot exists in Ceph now. */
  exists(signal: AbortSignal): Promise<boolean>;
  /** Creates the snapshot directly (no freeze). */
  createDirect(signal: AbortSignal): Promise<void>;
  /** Bound to the snapshot's name already (as the RBD source's backup logger is): lines add only `vm`. */
  logger: Logger;
  signal?: AbortSignal;
  /** First and longest pause between checks for the snapshot (defaults 250 ms and 2 s). */
  pollMs?: { first: number; max: number };
}

interface SnapshotRequestValue {
  vm: string;
  snapshot: string;
}

/** Parses a request value; null if it is not `{"vm": string, "snapshot": string}`. */
export function parseSnapshotRequest(value: Buffer | null): SnapshotRequestValue | null {
  if (value == null) return null;
  let data: unknown;
  try {
    data = JSON.parse(value.toString('utf8'));
  } catch {
    return null;
  }
  const v = data as Partial<SnapshotRequestValue> | null;
  if (v == null || typeof v !== 'object' || typeof v.vm !== 'string' || typeof v.snapshot !== 'string')
    return null;
  return { vm: v.vm, snapshot: v.snapshot };
}

function consulReason(error: ConsulError): NonNullable<SnapshotOutcome['reason']> {
  switch (error.kind) {
    case 'unreachable':
      return 'consul-unreachable';
    case 'timeout':
      return 'consul-timeout';
    case 'forbidden':
      return 'consul-forbidden';
    default:
      return 'consul-error';
  }
}

/**
 * Gets a snapshot of the VM's image made with the guest frozen, or — when that is not possible within
 * `timeoutMs` — directly. Consul trouble never fails the backup: it is logged and the snapshot is made
 * directly. Ceph trouble (the existence check or the direct snapshot failing) does fail it.
 *
 * Time: everything up to the decision (clean-up of stale requests, writing the request, waiting for the
 * snapshot) is bounded by `timeoutMs`; each Consul request is cut to the time left (at least 500 ms).
 * Afterwards, deleting the request adds at most a few Consul requests, each bounded by the client's limit.
 */
export async function requestConsistentSnapshot(options: SnapshotRequestOptions): Promise<SnapshotOutcome> {
  const { consul, vm, snapshot, logger } = options;
  const signal = options.signal ?? new AbortController().signal;
  const poll = options.pollMs ?? { first: 250, max: 2000 };
  const log = logger.child({ vm });
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  const timeLeft = () => Math.max(500, Math.min(consul.timeoutMs, deadline - Date.now()));
  const key = `${REQUEST_PREFIX}${randomUUID()}`;
  /** Whether our request may be in Consul (and must be deleted). */
  let written = false;
  let consulHealthy = true;

  const direct = async (reason: NonNullable<SnapshotOutcome['reason']>): Promise<SnapshotOutcome> => {
    try {
      await options.createDirect(signal);
    } catch (error) {
      // The agent may have been in the middle of its snapshot when we gave up on it.
      if (!signal.aborted && (await options.exists(signal).catch(() => false))) {
        log.info('the host agent created the snapshot after all, just as backy tried to create it directly');
        return { method: 'agent', elapsedMs: Date.now() - started, requestKey: key };
      }
      throw error;
    }
    log.warn(
      { reason },
      'created the snapshot directly: it is crash consistent only (guest file systems were not frozen)',
    );
    return { method: 'direct', reason, elapsedMs: Date.now() - started };
  };
  const consulFailed = (error: unknown, what: string): NonNullable<SnapshotOutcome['reason']> => {
    if (!(error instanceof ConsulError)) throw error;
    consulHealthy = false;
    log.warn(
      { err: error.message, consul: consul.address },
      `cannot request a consistent snapshot from the host agent: ${what} failed`,
    );
    return consulReason(error);
  };

  try {
    // Requests of crashed runs first: the agent would otherwise freeze the guest for each of them again.
    try {
      await removeStaleRequests(consul, vm, log, null, { signal, timeoutMs: timeLeft() });
    } catch (error) {
      return await direct(consulFailed(error, 'listing snapshot requests in Consul'));
    }
    try {
      await consul.put(key, { vm, snapshot }, { signal, timeoutMs: timeLeft() });
      written = true;
    } catch (error) {
      // A timed-out or aborted PUT may still have been applied: try to delete it (briefly) afterwards.
      if (!(error instanceof ConsulError) || error.kind === 'timeout') written = true;
      return await direct(consulFailed(error, 'writing the snapshot request to Consul'));
    }
    log.info(
      { key, timeout_s: options.timeoutMs / 1000 },
      'requested a consistent snapshot from the host agent',
    );

    let pause = poll.first;
    for (;;) {
      signal.throwIfAborted();
      if (await options.exists(signal)) {
        const elapsedMs = Date.now() - started;
        log.info({ elapsed_s: elapsedMs / 1000 }, 'the host agent created the snapshot (guest frozen)');
        return { method: 'agent', elapsedMs, requestKey: key };
      }
      const left = deadline - Date.now();
      if (left <= 0) break;
      await sleep(Math.min(pause, left), undefined, { signal });
      pause = Math.min(pause * 2, poll.max);
    }

    log.warn(
      { timeout_s: options.timeoutMs / 1000, key },
      'the host agent did not create the snapshot in time (VM offline or on no host, agent down?)',
    );
    // Withdraw the request before snapshotting directly, so the agent does not freeze the guest later on.
    if (await deleteRequest(consul, key, log, { signal })) written = false;
    return await direct('timeout');
  } finally {
    // Not under the caller's signal: an aborted backup must still withdraw its request, or the agent
    // would freeze the guest for it on every later watch event. Each request is time-limited.
    if (written) {
      await deleteRequest(consul, key, log, { timeoutMs: consulHealthy ? undefined : 2000 });
    }
    if (consulHealthy) {
      // Requests that appeared meanwhile (e.g. a PUT of a crashed run that was still in flight).
      await removeStaleRequests(consul, vm, log, null, { quiet: true }).catch((error) => {
        log.warn({ err: (error as Error).message }, 'could not list snapshot requests to remove stale ones');
      });
    }
  }
}

async function deleteRequest(
  consul: ConsulClient,
  key: string,
  log: Logger,
  options: RequestOptions,
): Promise<boolean> {
  try {
    await consul.delete(key, options);
    log.debug({ key }, 'deleted the snapshot request');
    return true;
  } catch (error) {
    log.warn(
      { err: (error as Error).message, key },
      'could not delete the snapshot request; the next backup of this VM removes it',
    );
    return false;
  }
}

/**
 * Deletes this VM's requests for `backy-*` snapshots other than `keep` (left by runs that crashed before
 * their clean-up). Values that are not requests are logged and left alone: they are not ours to judge.
 * Failing to list throws (a ConsulError); failing to delete one key is logged.
 */
async function removeStaleRequests(
  consul: ConsulClient,
  vm: string,
  log: Logger,
  keep: string | null,
  options: RequestOptions & { quiet?: boolean },
): Promise<void> {
  const { entries } = await consul.list(REQUEST_PREFIX, options);
  for (const entry of entries) {
    if (entry.key === keep) continue;
    const request = parseSnapshotRequest(entry.value);
    if (request == null) {
      if (options.quiet) continue;
      log.warn(
        { key: entry.key, value: entry.value == null ? null : entry.value.toString('utf8').slice(0, 80) },
        'ignoring a value under snapshot/ that is not a snapshot request',
      );
      continue;
    }
    if (request.vm !== vm || !request.snapshot.startsWith(BACKY_SNAPSHOT_PREFIX)) continue;
    try {
      // cas: leave the key alone if someone rewrote it since we listed it.
      await consul.delete(entry.key, { signal: options.signal, cas: entry.modifyIndex });
      log.info(
        { key: entry.key, stale_snapshot: request.snapshot },
        'removed a stale snapshot request of this VM',
      );
    } catch (error) {
      if (!(error instanceof ConsulError)) throw error;
      log.warn({ err: error.message, key: entry.key }, 'could not delete a stale snapshot request');
    }
  }
}
