/** What the tests against the real Ceph test cluster (started by global-setup.ts) share. */
import { randomBytes } from 'node:crypto';
import { MiB, tempArchive } from '@backy/core/testing';
import { rbdPool, TEST_POOL } from '@backy/test-env/ceph';
import pino from 'pino';
import { inject } from 'vitest';

const provided = inject('ceph');
/** Why the cluster tests are skipped, or null when a cluster is running. */
export const skipReason = provided.skip;
export const conf = provided.conf ?? '/nonexistent/ceph.conf';
export const POOL = TEST_POOL;
export const CHUNK = 4 * MiB;
export const logger = pino({ level: process.env.BACKY_TEST_LOG ?? 'silent' });
/** `rbd` and the image set-up against the cluster's pool. */
export const ceph = rbdPool(conf, POOL);

let counter = 0;
export function uniqueImage(prefix: string): string {
  return `${prefix}-${process.pid}-${++counter}-${randomBytes(3).toString('hex')}`;
}

/** A chunked archive for a ceph-rbd source, in a temporary directory. */
export const rbdArchive = () =>
  tempArchive({ source: { type: 'ceph-rbd', pool: POOL, image: 'x' } }, 'backy-rbd-archive-');
