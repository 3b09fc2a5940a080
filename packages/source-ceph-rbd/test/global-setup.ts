/**
 * Starts a throw-away Ceph cluster (scripts/ceph-test-cluster) for the tests of this package and stops it
 * afterwards. Without the Ceph binaries the cluster tests are skipped with the reason; under CI=true they
 * fail instead. CEPH_TEST_CONF=path uses an already running cluster.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { missingTools } from '@backy/test-env';
import type { TestProject } from 'vitest/node';

const run = promisify(execFile);
const script = resolve(import.meta.dirname, '../../../scripts/ceph-test-cluster');

declare module 'vitest' {
  export interface ProvidedContext {
    ceph: { conf: string | null; skip: string | null };
  }
}

export default async function setup(project: TestProject) {
  const existing = process.env.CEPH_TEST_CONF;
  if (existing) {
    project.provide('ceph', { conf: existing, skip: null });
    return;
  }
  const missing = missingTools(
    'ceph',
    'ceph-mon',
    'ceph-osd',
    'monmaptool',
    'ceph-authtool',
    'rbd',
    'qemu-io',
    'qemu-img',
  );
  let skip: string | null = null;
  if (missing != null) skip = `${missing}; run scripts/ci-install-ceph`;
  else if (process.env.BACKY_SKIP_CEPH === '1') skip = 'BACKY_SKIP_CEPH=1 is set';
  if (skip != null) {
    if (process.env.CI === 'true') throw new Error(`Ceph tests must not be skipped under CI=true: ${skip}`);
    console.warn(`[source-ceph-rbd] cluster tests skipped: ${skip}`);
    project.provide('ceph', { conf: null, skip });
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'backy-ceph-test-'));
  let conf: string;
  try {
    const { stdout } = await run(script, ['start', dir], { timeout: 120_000 });
    const line = stdout.split('\n').find((l) => l.startsWith('CEPH_CONF='));
    if (line == null) throw new Error(`ceph-test-cluster printed no CEPH_CONF: ${stdout}`);
    conf = line.slice('CEPH_CONF='.length);
  } catch (error) {
    await run(script, ['stop', dir]).catch(() => {});
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`starting the Ceph test cluster failed: ${stderr.trim() || (error as Error).message}`);
  }
  project.provide('ceph', { conf, skip: null });
  return async () => {
    await run(script, ['stop', dir], { timeout: 60_000 }).catch((error) =>
      console.warn(`stopping the Ceph test cluster: ${error}`),
    );
    await rm(dir, { recursive: true, force: true });
  };
}
