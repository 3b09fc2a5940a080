/** What global-setup.ts started for this run, for the test files. */
import { type RbdPool, rbdPool } from '@backy/test-env/ceph';
import { inject } from 'vitest';

const fc = inject('fc');

export const consul = fc.consul;
export const aclConsul = fc.aclConsul;
/** `rbd` and the image set-up against the cluster's pool `rbd`. */
export const ceph: RbdPool | null = fc.ceph == null ? null : rbdPool(fc.ceph.conf);
/** Why tests needing Consul are skipped, or null. */
export const consulSkip = fc.consulSkip;
/** Why tests needing Consul and Ceph are skipped, or null. */
export const backendSkip = [fc.consulSkip, fc.cephSkip].filter((r) => r != null).join('; ') || null;
