/**
 * Starts a throw-away Ceph cluster (@backy/test-env/ceph) for the tests of this package and stops it
 * afterwards. Without the Ceph binaries the cluster tests are skipped with the reason; under CI=true they
 * fail instead. CEPH_TEST_CONF=path uses an already running cluster.
 */
import { testCeph } from '@backy/test-env/ceph';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    ceph: { conf: string | null; skip: string | null };
  }
}

export default async function setup(project: TestProject) {
  const ceph = await testCeph('qemu-io', 'qemu-img');
  if (ceph.skip != null) {
    if (process.env.CI === 'true')
      throw new Error(`Ceph tests must not be skipped under CI=true: ${ceph.skip}`);
    console.warn(`[source-ceph-rbd] cluster tests skipped: ${ceph.skip}`);
    project.provide('ceph', { conf: null, skip: ceph.skip });
    return;
  }
  project.provide('ceph', { conf: ceph.conf, skip: null });
  return ceph.stop;
}
