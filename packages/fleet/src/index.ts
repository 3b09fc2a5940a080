/**
 * `@backy/fleet`: several backup servers as one (docs/fleet.md). Each server keeps a Consul session and
 * registers itself; each job is run by the live server that rendezvous hashing picks among those whose
 * labels satisfy the job's, under the job's Consul lock, and its commit is fenced by the lock's index.
 */
import { hostname } from 'node:os';
import { ConsulClient } from '@backy/consul';
import { type FleetConfig, readTokenFile } from '@backy/core';
import type { Logger } from 'pino';
import { FleetMember } from './member.js';

export {
  ConsulClient,
  type ConsulClientOptions,
  ConsulError,
  type ConsulErrorKind,
  type KvEntry,
  /** `normalizeConsulAddress` of `@backy/consul`, under its former name here. */
  normalizeConsulAddress as consulUrl,
} from '@backy/consul';
export { FleetMember, type FleetMemberOptions, type FleetView, type JobHolder } from './member.js';
export { type FleetServer, ownerOf, score, unitHash } from './rendezvous.js';

/** The fleet member the central config's `fleet` section describes (not started yet). */
export async function fleetMemberOf(
  config: FleetConfig,
  options: { workers: number; logger: Logger },
): Promise<FleetMember> {
  const tokenFile = config['token-file'];
  const token = tokenFile == null ? null : await readTokenFile(tokenFile, 'fleet.token-file');
  return new FleetMember({
    client: new ConsulClient({ address: config.consul, token, tokenSetting: 'fleet.token-file' }),
    server: config.server ?? hostname().split('.')[0]!,
    labels: config.labels,
    workers: options.workers,
    ttlSeconds: config['session-ttl'],
    lockDelaySeconds: config['lock-delay'],
    prefix: config['key-prefix'],
    logger: options.logger,
  });
}
