/** What global-setup.ts started for this run, for the test files. */
import { inject } from 'vitest';
import { type CephClient, cephClient } from './ceph-cluster.js';

const fc = inject('fc');

export const consul = fc.consul;
export const aclConsul = fc.aclConsul;
export const ceph: CephClient | null = fc.ceph == null ? null : cephClient(fc.ceph.conf);
/** Why tests needing Consul are skipped, or null. */
export const consulSkip = fc.consulSkip;
/** Why tests needing Consul and Ceph are skipped, or null. */
export const backendSkip = [fc.consulSkip, fc.cephSkip].filter((r) => r != null).join('; ') || null;
