/**
 * A throw-away Ceph cluster for the tests through `scripts/ceph-test-cluster`, plus a few `rbd` calls the
 * tests use to set up and inspect images (the code under test goes through @backy/source-ceph-rbd).
 */
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { missingTools } from '@backy/test-env';
import { REPO } from './consul-agent.js';

const run = promisify(execFile);
const SCRIPT = join(REPO, 'scripts/ceph-test-cluster');

/** Why Ceph tests cannot run here, or null. */
export function cephMissing(): string | null {
  const missing = missingTools('ceph', 'ceph-mon', 'ceph-osd', 'monmaptool', 'ceph-authtool', 'rbd');
  if (missing != null) return `${missing}; run scripts/ci-install-ceph`;
  try {
    accessSync(SCRIPT, constants.X_OK);
  } catch {
    return `${SCRIPT} is missing`;
  }
  return null;
}

export interface CephClient {
  conf: string;
  rbd(...args: string[]): Promise<string>;
}

export interface TestCeph extends CephClient {
  dir: string;
  stop(): Promise<void>;
}

/** `rbd` against the cluster of `conf`. */
export function cephClient(conf: string): CephClient {
  return {
    conf,
    rbd: async (...args) =>
      (await run('rbd', ['--conf', conf, ...args], { timeout: 120_000, maxBuffer: 64 << 20 })).stdout,
  };
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

export async function snapshotNames(ceph: CephClient, pool: string, image: string): Promise<string[]> {
  const out = await ceph.rbd('snap', 'ls', '--format', 'json', `${pool}/${image}`);
  return (JSON.parse(out) as { name: string }[]).map((s) => s.name);
}

/**
 * A one-extent "rbd diff v1" stream (Ceph's doc/dev/rbd-diff.rst): header, `s` image size, `w` offset
 * length data, `e`; integers little-endian. Written here rather than taken from the RBD package so the test
 * data does not depend on the code under test.
 */
function oneExtentDiff(size: number, offset: number, data: Buffer): Buffer {
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  return Buffer.concat([
    Buffer.from('rbd diff v1\n', 'latin1'),
    Buffer.from('s'),
    u64(size),
    Buffer.from('w'),
    u64(offset),
    u64(data.length),
    data,
    Buffer.from('e'),
  ]);
}

/** Runs `rbd` with `input` on stdin; returns stdout. */
function rbdWithInput(ceph: CephClient, args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('rbd', ['--conf', ceph.conf, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve(Buffer.concat(out))
        : reject(new Error(`rbd ${args.join(' ')}: exit ${code}: ${err}`)),
    );
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

export async function imageSize(ceph: CephClient, pool: string, image: string): Promise<number> {
  return (JSON.parse(await ceph.rbd('info', '--format', 'json', `${pool}/${image}`)) as { size: number })
    .size;
}

/** Writes `data` at `offset` into the image without a kernel mapping (`rbd import-diff` of a one-extent diff). */
export async function writeImage(
  ceph: CephClient,
  pool: string,
  image: string,
  offset: number,
  data: Buffer,
): Promise<void> {
  const size = await imageSize(ceph, pool, image);
  const diff = oneExtentDiff(size, offset, data);
  await rbdWithInput(ceph, ['import-diff', '--no-progress', '-', `${pool}/${image}`], diff);
}

/** Creates an image holding `data` (a multiple of 1 MiB). */
export async function createImage(
  ceph: CephClient,
  pool: string,
  image: string,
  data: Buffer,
): Promise<void> {
  await rbdWithInput(ceph, ['import', '--no-progress', '-', `${pool}/${image}`], data);
}

export async function resizeImage(
  ceph: CephClient,
  pool: string,
  image: string,
  size: number,
): Promise<void> {
  await ceph.rbd(
    'resize',
    '--no-progress',
    '--allow-shrink',
    '--size',
    `${size / (1024 * 1024)}M`,
    `${pool}/${image}`,
  );
}

/** The image (or a snapshot of it) as `rbd export` reads it. */
export async function exportImage(
  ceph: CephClient,
  pool: string,
  image: string,
  snapshot?: string,
): Promise<Buffer> {
  return rbdWithInput(
    ceph,
    ['export', '--no-progress', `${pool}/${image}${snapshot ? `@${snapshot}` : ''}`, '-'],
    Buffer.alloc(0),
  );
}
