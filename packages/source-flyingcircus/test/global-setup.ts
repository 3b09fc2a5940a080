/**
 * Starts what the tests of this package run against, once for all files: a throw-away Ceph cluster
 * (@backy/test-env/ceph), a Consul dev agent and a second one with ACLs enforced
 * (scripts/consul-test-agent). What cannot run here is skipped with the reason printed; under CI=true it
 * fails instead. CEPH_TEST_CONF=path uses an already running Ceph cluster.
 */
import { testCeph } from '@backy/test-env/ceph';
import { consulMissing, startConsul, type TestConsul } from '@backy/test-env/consul';
import type { TestProject } from 'vitest/node';

export interface ProvidedConsul {
  address: string;
  /** Management token (ACL agent only). */
  token: string | null;
}

declare module 'vitest' {
  export interface ProvidedContext {
    fc: {
      ceph: { conf: string } | null;
      consul: ProvidedConsul | null;
      aclConsul: ProvidedConsul | null;
      cephSkip: string | null;
      consulSkip: string | null;
    };
  }
}

export default async function setup(project: TestProject) {
  const consulSkip = consulMissing();
  const started: { stop(): Promise<void> }[] = [];
  const stopAll = async () => {
    await Promise.all(
      started.map((s) => s.stop().catch((error) => console.warn(`[source-flyingcircus] stopping: ${error}`))),
    );
  };
  try {
    let consul: TestConsul | null = null;
    let aclConsul: TestConsul | null = null;
    const [ceph] = await Promise.all([
      testCeph().then((c) => {
        if (c.skip == null) started.push(c);
        return c;
      }),
      (async () => {
        if (consulSkip) return;
        consul = await startConsul();
        started.push(consul);
        aclConsul = await startConsul({ acl: true });
        started.push(aclConsul);
      })(),
    ]);
    const cephSkip = ceph.skip;
    const missing = [cephSkip, consulSkip].filter((r) => r != null);
    if (missing.length > 0) {
      if (process.env.CI === 'true')
        throw new Error(`CI=true, but the tests of source-flyingcircus cannot run: ${missing.join('; ')}`);
      console.warn(`[source-flyingcircus] tests needing them are skipped: ${missing.join('; ')}`);
    }
    const provided = (c: TestConsul | null): ProvidedConsul | null =>
      c == null ? null : { address: c.address, token: c.token };
    project.provide('fc', {
      ceph: ceph.conf == null ? null : { conf: ceph.conf },
      consul: provided(consul),
      aclConsul: provided(aclConsul),
      cephSkip,
      consulSkip,
    });
  } catch (error) {
    await stopAll();
    throw error;
  }
  return stopAll;
}
