// `pnpm bench:s3`: backup, incremental (1% of the chunks changed) and restore of a VM-like image (1 GiB
// by default) into an archive on S3 (a Ceph RGW on the throw-away test cluster) beside the same into the
// local directory store, alternating in one run; medians, MB/s of image, peak RSS. Prints ratios and
// asserts nothing (speed is measured, not tested).
//
// Uses the gateway RGW_TEST_ENDPOINT (with RGW_TEST_ACCESS_KEY_ID / RGW_TEST_SECRET_ACCESS_KEY) names, or
// starts scripts/ceph-test-cluster --rgw in a temporary directory and stops it at the end.
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { changeBlocks, writeVmImage } from '@backy/core/testing/helpers';
import { MiB } from './measure.js';
import { REPO } from './paths.js';
import { warmMemory } from './warm-memory.js';

const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-s3');
const SIZE = Number(process.env.BENCH_SIZE ?? 1024 ** 3);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const wrapper = fileURLToPath(new URL('./rss-wrapper.js', import.meta.url));
const rssFile = join(dir, 'rss');
const clusterScript = join(REPO, 'scripts/ceph-test-cluster');

type Step = 'full' | 'incr' | 'restore';
type Store = 'local' | 's3';

function gateway(): { endpoint: string; key: string; secret: string; stop: () => void } {
  if (process.env.RGW_TEST_ENDPOINT) {
    return {
      endpoint: process.env.RGW_TEST_ENDPOINT,
      key: process.env.RGW_TEST_ACCESS_KEY_ID ?? '',
      secret: process.env.RGW_TEST_SECRET_ACCESS_KEY ?? '',
      stop: () => {},
    };
  }
  const clusterDir = join(dir, 'cluster');
  const r = spawnSync(clusterScript, ['start', clusterDir, '--rgw'], {
    encoding: 'utf8',
    // Room for a few backups of the image (memstore holds them in RAM, and frees deleted ones).
    env: { ...process.env, CEPH_TEST_MEMSTORE_BYTES: String(Math.max(4096 * MiB, SIZE * 4)) },
  });
  if (r.status !== 0) throw new Error(`starting the test gateway failed: ${r.stderr}`);
  const value = (name: string) => new RegExp(`^${name}=(.*)$`, 'm').exec(r.stdout)?.[1] ?? '';
  return {
    endpoint: value('RGW_TEST_ENDPOINT'),
    key: value('RGW_TEST_ACCESS_KEY_ID'),
    secret: value('RGW_TEST_SECRET_ACCESS_KEY'),
    stop: () => void spawnSync(clusterScript, ['stop', clusterDir]),
  };
}

function timed(args: string[], env: NodeJS.ProcessEnv): number {
  spawnSync('sync');
  warmMemory();
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [wrapper, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env, BACKY_RSS_FILE: rssFile },
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.status !== 0) throw new Error(`backy ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const rgw = gateway();
try {
  const env = { AWS_ACCESS_KEY_ID: rgw.key, AWS_SECRET_ACCESS_KEY: rgw.secret };
  const client = new S3Client({
    endpoint: rgw.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: rgw.key, secretAccessKey: rgw.secret },
  });
  const bucket = `backy-bench-${process.pid}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const emptyPrefix = async (prefix: string) => {
    for (;;) {
      const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
      const keys = (out.Contents ?? []).map((c) => ({ Key: c.Key! }));
      if (keys.length === 0) return;
      await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
    }
  };
  const image = join(dir, 'vm.img');
  console.log(
    `backy S3 benchmark: ${(SIZE / 1024 ** 3).toFixed(2)} GiB VM-like image, ${RUNS} runs per store, medians; S3 is Ceph RGW ${rgw.endpoint} on a memstore OSD on this host`,
  );
  const seconds: Record<Store, Record<Step, number[]>> = {
    local: { full: [], incr: [], restore: [] },
    s3: { full: [], incr: [], restore: [] },
  };
  const rss: Record<Store, Record<Step, number[]>> = {
    local: { full: [], incr: [], restore: [] },
    s3: { full: [], incr: [], restore: [] },
  };
  const step = async (store: Store, name: Step, args: string[]) => {
    await rm(rssFile, { force: true });
    seconds[store][name].push(timed(args, env));
    rss[store][name].push(Number((await readFile(rssFile, 'utf8')).trim()));
  };
  for (let run = 0; run < RUNS; run++) {
    for (const store of ['local', 's3'] as const) {
      await writeVmImage(image, SIZE);
      const archive = join(dir, `${store}-${run}`);
      const prefix = `run-${run}/`;
      const init = ['-b', archive, 'init'];
      if (store === 's3')
        init.push(
          '--store',
          'type=s3',
          '--store',
          `endpoint=${rgw.endpoint}`,
          '--store',
          `bucket=${bucket}`,
          '--store',
          `prefix=${prefix}`,
        );
      timed([...init, 'file', image], env);
      await step(store, 'full', ['-b', archive, 'backup', 'daily']);
      await changeBlocks(image, SIZE, Math.max(1, Math.round(SIZE / (4 * MiB) / 100)));
      await step(store, 'incr', ['-b', archive, 'backup', 'daily']);
      const target = join(dir, 'restored.img');
      await rm(target, { force: true });
      await step(store, 'restore', ['-b', archive, 'restore', target]);
      await rm(target, { force: true });
      await rm(archive, { recursive: true, force: true });
      if (store === 's3') await emptyPrefix(prefix);
    }
  }
  const fmt = (store: Store, name: Step) => {
    const m = median(seconds[store][name]);
    return `${m.toFixed(2).padStart(6)} s ${(SIZE / m / 1e6).toFixed(0).padStart(5)} MB/s  RSS ${(median(rss[store][name]) / 1e6).toFixed(0).padStart(4)} MB`;
  };
  console.log(
    `${'phase'.padEnd(18)} ${'local directory'.padEnd(32)} ${'S3 (RGW)'.padEnd(32)} S3 throughput / local (target ≥ 0.5)`,
  );
  for (const [label, name] of [
    ['full backup', 'full'],
    ['incremental (1%)', 'incr'],
    ['restore', 'restore'],
  ] as const) {
    const ratio = median(seconds.local[name]) / median(seconds.s3[name]);
    console.log(
      `${label.padEnd(18)} ${fmt('local', name).padEnd(32)} ${fmt('s3', name).padEnd(32)} ${ratio.toFixed(2)}`,
    );
  }
  console.log(
    `runs (s): ${(['local', 's3'] as const).map((s) => `${s} ${(['full', 'incr', 'restore'] as const).map((n) => `${n} ${seconds[s][n].map((x) => x.toFixed(2)).join('/')}`).join(', ')}`).join('; ')}`,
  );
  console.log('peak RSS target for S3: ≤ 256 MB in every phase');
} finally {
  rgw.stop();
  await rm(dir, { recursive: true, force: true });
}
