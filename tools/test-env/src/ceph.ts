/**
 * The throw-away Ceph cluster of the tests (`scripts/ceph-test-cluster`: one mon, one memstore OSD, the
 * pool `rbd`, loopback only), and the `rbd` calls the tests set images up and look at them with. Image
 * data goes in through `rbd import-diff` of a stream written here, not by the code under test.
 */
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { missingTools } from './index.js';

const execFileAsync = promisify(execFile);

export const CEPH_TEST_CLUSTER = fileURLToPath(
  new URL('../../../scripts/ceph-test-cluster', import.meta.url),
);

/** The pool the test cluster has. */
export const TEST_POOL = 'rbd';

/**
 * Why a cluster cannot be started here (Ceph binaries or `more` tools missing, the script not
 * executable), or null.
 */
export function cephMissing(...more: string[]): string | null {
  const missing = missingTools('ceph', 'ceph-mon', 'ceph-osd', 'monmaptool', 'ceph-authtool', 'rbd', ...more);
  if (missing != null) return `${missing}; run scripts/ci-install-ceph`;
  try {
    accessSync(CEPH_TEST_CLUSTER, constants.X_OK);
  } catch {
    return `${CEPH_TEST_CLUSTER} is missing`;
  }
  return null;
}

export interface TestCephCluster {
  conf: string;
  /** The KEY=VALUE lines `ceph-test-cluster start` printed: CEPH_CONF, with the gateway RGW_TEST_*. */
  printed: Record<string, string>;
  /** Stops the cluster (the gateway too) and removes its files; never rejects. */
  stop(): Promise<void>;
}

/**
 * Starts a cluster in a new temporary directory, with `rgw` also the S3 gateway (@backy/test-env/rgw);
 * on failure nothing is left running.
 */
export async function startCephCluster(options: { rgw?: boolean } = {}): Promise<TestCephCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'backy-ceph-test-'));
  const stop = async () => {
    await execFileAsync(CEPH_TEST_CLUSTER, ['stop', dir], { timeout: 60_000 }).catch((error) =>
      console.warn(`stopping the Ceph test cluster: ${error}`),
    );
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const { stdout } = await execFileAsync(
      CEPH_TEST_CLUSTER,
      ['start', dir, ...(options.rgw ? ['--rgw'] : [])],
      // The gateway takes another 10-20 s to create its pools and listen.
      { timeout: options.rgw ? 240_000 : 180_000 },
    );
    const printed = Object.fromEntries(
      [...stdout.matchAll(/^([A-Z_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!.trim()]),
    );
    const conf = printed.CEPH_CONF;
    if (conf == null) throw new Error(`ceph-test-cluster printed no CEPH_CONF: ${stdout}`);
    return { conf, printed, stop };
  } catch (error) {
    await stop();
    const stderr = ((error as { stderr?: string }).stderr ?? '').trim();
    throw new Error(`starting the Ceph test cluster failed: ${stderr || (error as Error).message}`);
  }
}

/** What a test run's global setup has: a cluster, or why the Ceph tests skip. */
export type TestCeph = { conf: string; skip: null; stop(): Promise<void> } | { conf: null; skip: string };

/**
 * The cluster for a test run: the one CEPH_TEST_CONF names (already running, left running), a new one,
 * or the reason there is none (tools missing, BACKY_SKIP_CEPH=1). `more` are tools the tests need
 * besides Ceph's. Whether a skip is allowed (not under CI=true) is the caller's to decide.
 */
export async function testCeph(...more: string[]): Promise<TestCeph> {
  const existing = process.env.CEPH_TEST_CONF;
  if (existing) return { conf: existing, skip: null, stop: async () => {} };
  const missing = cephMissing(...more);
  if (missing != null) return { conf: null, skip: missing };
  if (process.env.BACKY_SKIP_CEPH === '1') return { conf: null, skip: 'BACKY_SKIP_CEPH=1 is set' };
  const cluster = await startCephCluster();
  return { conf: cluster.conf, skip: null, stop: cluster.stop };
}

/** Runs a program without a shell, `input` on its stdin; resolves with its stdout, rejects with its stderr. */
export function runTool(command: string, args: string[], input?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${err.trim()}`));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

/** A range of an image to write: `data` at `offset`. */
export interface Extent {
  offset: number;
  data: Buffer;
}

/**
 * An "rbd diff v1" stream (Ceph's doc/dev/rbd-diff.rst): header, `s` image size, a `w` record (offset,
 * length, data) per extent, `e`; integers little-endian.
 */
export function rbdDiff(size: number, extents: Extent[]): Buffer {
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  const parts: Buffer[] = [Buffer.from('rbd diff v1\n', 'latin1'), Buffer.from('s'), u64(size)];
  for (const { offset, data } of extents) parts.push(Buffer.from('w'), u64(offset), u64(data.length), data);
  parts.push(Buffer.from('e'));
  return Buffer.concat(parts);
}

/** `rbd` against one pool of a cluster; images are named without the pool (`image` or `image@snap`). */
export interface RbdPool {
  conf: string;
  pool: string;
  /** `rbd --conf CONF ARGS…`; resolves with stdout. */
  rbd(...args: string[]): Promise<Buffer>;
  /** Creates an image of `size` bytes, unallocated but for `extents`. */
  createImage(image: string, size: number, extents?: Extent[]): Promise<void>;
  /** Creates an image holding `data` (`rbd import`, which leaves zero blocks unallocated). */
  importImage(image: string, data: Buffer): Promise<void>;
  imageSize(image: string): Promise<number>;
  /** Writes `data` at `offset` of the image's head, without a kernel mapping. */
  writeImage(image: string, offset: number, data: Buffer): Promise<void>;
  /** Grows (with zeros) or shrinks the image to `size` bytes. */
  resizeImage(image: string, size: number): Promise<void>;
  /** The image or a snapshot (`image@snap`) as `rbd export` reads it. */
  exportImage(image: string): Promise<Buffer>;
  snapshots(image: string): Promise<{ name: string; protected: string }[]>;
  snapshotNames(image: string): Promise<string[]>;
  /** Removes the image with all its snapshots, protected ones too; no error when it is not there. */
  removeImage(image: string): Promise<void>;
  /** Runs qemu-io commands (e.g. `write -z 0 4M`, `discard 4M 8M`) on the image's head through librbd. */
  qemuIo(image: string, ...commands: string[]): Promise<void>;
}

export function rbdPool(conf: string, pool = TEST_POOL): RbdPool {
  const rbd = (...args: string[]) => runTool('rbd', ['--conf', conf, ...args]);
  const spec = (image: string) => `${pool}/${image}`;
  const importDiff = (image: string, size: number, extents: Extent[]) =>
    runTool(
      'rbd',
      ['--conf', conf, 'import-diff', '--no-progress', '-', spec(image)],
      rbdDiff(size, extents),
    );
  const imageSize = async (image: string): Promise<number> =>
    (JSON.parse((await rbd('info', '--format', 'json', spec(image))).toString()) as { size: number }).size;
  const snapshots = async (image: string) =>
    JSON.parse((await rbd('snap', 'ls', '--format', 'json', spec(image))).toString()) as {
      name: string;
      protected: string;
    }[];
  return {
    conf,
    pool,
    rbd,
    async createImage(image, size, extents = []) {
      await rbd('create', '--size', `${size}B`, spec(image));
      if (extents.length > 0) await importDiff(image, size, extents);
    },
    async importImage(image, data) {
      await runTool('rbd', ['--conf', conf, 'import', '--no-progress', '-', spec(image)], data);
    },
    imageSize,
    async writeImage(image, offset, data) {
      await importDiff(image, await imageSize(image), [{ offset, data }]);
    },
    async resizeImage(image, size) {
      await rbd('resize', '--no-progress', '--allow-shrink', '--size', `${size}B`, spec(image));
    },
    exportImage: (image) => rbd('export', '--no-progress', spec(image), '-'),
    snapshots,
    snapshotNames: async (image) => (await snapshots(image)).map((s) => s.name),
    async removeImage(image) {
      for (const s of await snapshots(image).catch(() => [])) {
        if (s.protected === 'true') await rbd('snap', 'unprotect', `${spec(image)}@${s.name}`);
      }
      await rbd('snap', 'purge', '--no-progress', spec(image)).catch(() => {});
      await rbd('rm', '--no-progress', spec(image)).catch(() => {});
    },
    async qemuIo(image, ...commands) {
      await runTool('qemu-io', [
        '-f',
        'raw',
        ...commands.flatMap((c) => ['-c', c]),
        `rbd:${spec(image)}:conf=${conf}`,
      ]);
    },
  };
}
