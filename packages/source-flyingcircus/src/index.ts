import { ConsulError } from '@backy/consul';
import {
  type BackupContext,
  type BackupSource,
  BackyError,
  defineSource,
  type SourceEnvironment,
} from '@backy/core/source';
import cephRbdSource, { createRbdSource } from '@backy/source-ceph-rbd';
import { rbdSourceOptions } from '@backy/source-ceph-rbd/options';
import { ConsulKv } from './consul.js';
import { type FlyingcircusSourceOptions, flyingcircusSourceOptions } from './options.js';
import { REQUEST_PREFIX, requestConsistentSnapshot, type SnapshotOutcome } from './snapshot-request.js';

export {
  ConsulError,
  type ConsulErrorKind,
  DEFAULT_CONSUL_ADDRESS,
  type KvEntry,
} from '@backy/consul';
export { ConsulKv } from './consul.js';
export type { FlyingcircusSourceOptions } from './options.js';
export {
  parseSnapshotRequest,
  REQUEST_PREFIX,
  requestConsistentSnapshot,
  type SnapshotMethod,
  type SnapshotOutcome,
  type SnapshotRequestOptions,
} from './snapshot-request.js';

/** Test seams; not configuration. */
export interface FlyingcircusSourceTuning {
  /** Pauses between checks for the agent's snapshot (default 250 ms doubling up to 2 s). */
  pollMs?: { first: number; max: number };
  /** Called with the outcome of each snapshot handshake. */
  onSnapshot?: (outcome: SnapshotOutcome) => void;
}

/**
 * A Ceph RBD source whose snapshots are made by the VM's host agent with the guest's file systems frozen
 * (see snapshot-request.ts). Everything else — diffs, verification, snapshot clean-up — is the RBD
 * source's.
 */
export function createFlyingcircusSource(
  options: FlyingcircusSourceOptions,
  env: SourceEnvironment,
  tuning: FlyingcircusSourceTuning = {},
): BackupSource & { settled(): Promise<void> } {
  const { vm, consul_acl_token, consul_address, snapshot_timeout, ...rbdOptions } = options;
  const consul = new ConsulKv({ address: consul_address, token: consul_acl_token ?? null });
  // The hook has no BackupContext; the wrapper below hands it the current one to record the outcome.
  let current: BackupContext | null = null;

  const inner = createRbdSource(rbdOptions, env, {
    async makeSnapshot({ rbd, pool, image, snapshot, logger, signal }) {
      const outcome = await requestConsistentSnapshot({
        consul,
        vm,
        snapshot,
        timeoutMs: snapshot_timeout * 1000,
        exists: (s) => rbd.snapExists(pool, image, snapshot, s),
        createDirect: (s) => rbd.snapCreate(pool, image, snapshot, s),
        logger,
        signal,
        pollMs: tuning.pollMs,
      });
      current?.remember({
        snapshot_method: outcome.method,
        ...(outcome.reason == null ? {} : { snapshot_direct_reason: outcome.reason }),
      });
      tuning.onSnapshot?.(outcome);
    },
  });

  const source: BackupSource & { settled(): Promise<void> } = {
    settled: () => inner.settled(),
    async backup(ctx) {
      current = ctx;
      try {
        await inner.backup(ctx);
      } finally {
        current = null;
      }
    },
    verify: (ctx) => inner.verify(ctx),
    finish: (ctx) => inner.finish(ctx),
  };
  return source;
}

/** `POOL/IMAGE,VM[,CONSUL_ACL_TOKEN]` → options, as backy 2.x's `backy init flyingcircus` took them. */
export function parseFlyingcircusInitArgument(argument: string): Record<string, unknown> {
  const parts = argument.split(',').map((part) => part.trim());
  if (parts.length < 2 || parts.length > 3 || parts.some((part) => part === '')) {
    throw new BackyError(
      'USAGE',
      `flyingcircus source: expected POOL/IMAGE,VM[,CONSUL_ACL_TOKEN], got ${JSON.stringify(argument)}`,
    );
  }
  const [volume, vm, token] = parts as [string, string, string | undefined];
  const rbd = cephRbdSource.parseInitArgument?.(volume) ?? {};
  return { ...rbd, vm, ...(token == null ? {} : { consul_acl_token: token }) };
}

export default defineSource<FlyingcircusSourceOptions>({
  type: 'flyingcircus',
  optionsSchema: flyingcircusSourceOptions,
  create: (options, env) => createFlyingcircusSource(options, env),
  parseInitArgument: parseFlyingcircusInitArgument,
  describe: (options) => `${options.pool}/${options.image} (VM ${options.vm})`,
  paths: ['conf', 'keyring'],
  async checkInit(options) {
    const { vm: _vm, consul_acl_token, consul_address, snapshot_timeout: _t, ...rbdOptions } = options;
    const warnings = (await cephRbdSource.checkInit?.(rbdSourceOptions.parse(rbdOptions))) ?? [];
    try {
      await new ConsulKv({ address: consul_address, token: consul_acl_token ?? null, timeoutMs: 5000 }).keys(
        REQUEST_PREFIX,
      );
    } catch (error) {
      if (!(error instanceof ConsulError)) throw error;
      warnings.push(`${error.message}; backups will fall back to snapshots without freezing the guest`);
    }
    return warnings;
  },
});
