/**
 * A throw-away Ceph cluster for the tests through `scripts/ceph-test-cluster`, plus a few `rbd` calls the
 * tests use to set up and inspect images (the code under test goes through @backy/source-ceph-rbd).
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './consul-agent.js';

const run = promisify(execFile);
const SCRIPT = join(REPO, 'scripts/ceph-test-cluster');

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Why Ceph tests cannot run here, or null. */
export function cephMissing(): string | null {
  const missing = ['ceph', 'ceph-mon', 'ceph-osd', 'monmaptool', 'ceph-authtool', 'rbd'].filter(
    (tool) => !onPath(tool),
  );
  if (missing.length > 0) return `Ceph binaries missing (${missing.join(', ')}); run scripts/ci-install-ceph`;
  try {
    accessSync(SCRIPT, constants.X_OK);
  } catch {
    return `${SCRIPT} is missing`;
  }
  return null;
}

export interface TestCeph {
  conf: string;
  dir: string;
  rbd(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startCeph(): Promise<TestCeph> {
  const dir = await mkdtemp(join(tmpdir(), 'backy-ceph-'));
  try {
    const { stdout } = await run(SCRIPT, ['start', dir], { timeout: 180_000 });
    const conf = /CEPH_CONF=(.*)/.exec(stdout)?.[1]?.trim();
    if (conf == null) throw new Error(`ceph-test-cluster printed no CEPH_CONF: ${stdout}`);
    return {
      conf,
      dir,
      rbd: async (...args) =>
        (await run('rbd', ['--conf', conf, ...args], { timeout: 120_000, maxBuffer: 64 << 20 })).stdout,
      async stop() {
        await run(SCRIPT, ['stop', dir], { timeout: 60_000 }).catch(() => {});
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await run(SCRIPT, ['stop', dir], { timeout: 60_000 }).catch(() => {});
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

export async function snapshotNames(ceph: TestCeph, pool: string, image: string): Promise<string[]> {
  const out = await ceph.rbd('snap', 'ls', '--format', 'json', `${pool}/${image}`);
  return (JSON.parse(out) as { name: string }[]).map((s) => s.name);
}
