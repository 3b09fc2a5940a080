import { DEFAULT_CONSUL_ADDRESS, normalizeConsulAddress } from '@backy/consul';
import { checkDuration } from '@backy/core/source';
import type { RbdSourceOptions } from '@backy/source-ceph-rbd';
import { rbdSourceOptions } from '@backy/source-ceph-rbd/options';
import { z } from 'zod';

/** The flyingcircus source's options: the ceph-rbd source's, and how to reach the VM's host agent. */
export interface FlyingcircusSourceOptions extends RbdSourceOptions {
  /** The VM's name, as the host agent knows it (the `vm` of the snapshot request). */
  vm: string;
  /** ACL token for Consul, sent as `X-Consul-Token`. Default: none. */
  consul_acl_token?: string;
  /** HTTP address of the Consul agent. Default `http://127.0.0.1:8500`. */
  consul_address: string;
  /** How long to wait for the host agent's snapshot before making it directly (`90s`, `2m`, seconds; in seconds). Default 90 s. */
  snapshot_timeout: number;
}

const consulAddressSchema = z.string().transform((value, ctx) => {
  try {
    return normalizeConsulAddress(value);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

const durationSchema = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const seconds = checkDuration(value);
  if (typeof seconds !== 'string') return seconds;
  ctx.addIssue({ code: 'custom', message: seconds });
  return z.NEVER;
});

// The type is written out (not `z.infer`) so that the published declarations do not name zod;
// options.test.ts holds the schema to it.
export const flyingcircusSourceOptions = rbdSourceOptions.extend({
  vm: z.string().min(1),
  consul_acl_token: z.string().min(1).optional(),
  consul_address: consulAddressSchema.default(DEFAULT_CONSUL_ADDRESS),
  snapshot_timeout: durationSchema.default(90),
});
