// `pnpm bench:object-lock`: what S3 Object Lock costs an incremental backup (issue 27). A VM-like image
// (4 GiB by default, ~70% of it data: ~1.6 GiB incompressible, ~1.2 GiB log-like text) gets a full
// backup and then, after 1% of its 4 MiB regions changed, an incremental, into three archives on one
// Ceph RGW: (a) a plain bucket, the baseline; (b) a bucket with Object Lock, `object-lock: {mode:
// compliance, step: 1}`: every chunk's retention reaches past its parent's, so the incremental extends
// every chunk it references (the worst case); (c) the same with the default `step: 7d`: the parent's
// chunks are retained to the step's end already, only new chunks get a retention (the normal case).
// Per variant: the incremental's wall time and its ratio to (a), the requests it made (counted from the
// gateway's access log: PutObjectRetention, PutObject, all), `chunks_extended` of its `.rev` retention,
// and backy's peak RSS. One run, no medians; prints, asserts nothing.
//
// The gateway: RGW_TEST_ENDPOINT (with its keys and CEPH_CONF, whose directory holds log/rgw.log), or by
// default a throw-away cluster of scripts/ceph-test-cluster --rgw in BENCH_DIR, stopped at the end.
// Compliance-mode objects cannot be deleted by anyone until their retention ends (a day and more here),
// so point it at a shared gateway only if that gateway may keep the bytes: about 2 GiB per locked
// archive at 4 GiB, in RAM on the memstore OSD.
//
//   BENCH_SIZE (bytes, default 4 GiB), BENCH_DIR (default .bench-object-lock in the repository)
import { spawnSync } from 'node:child_process';
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { changeBlocks, writeVmImage } from '@backy/core/testing/helpers';
import { MiB } from './measure.js';
import { BACKY_BIN, REPO } from './paths.js';
import { warmMemory } from './warm-memory.js';

const dir = process.env.BENCH_DIR ?? join(REPO, '.bench-object-lock');
const SIZE = Number(process.env.BENCH_SIZE ?? 4 * 1024 ** 3);
const wrapper = fileURLToPath(new URL('./rss-wrapper.js', import.meta.url));
const rssFile = join(dir, 'rss');
const clusterScript = join(REPO, 'scripts/ceph-test-cluster');

interface Gateway {
  endpoint: string;
  key: string;
  secret: string;
  log: string;
  stop: () => void;
}

function gateway(): Gateway {
  if (process.env.RGW_TEST_ENDPOINT) {
    const conf = process.env.CEPH_CONF;
    if (!conf)
      throw new Error(
        'RGW_TEST_ENDPOINT is set but CEPH_CONF is not: the requests are counted in its log/rgw.log',
      );
    return {
      endpoint: process.env.RGW_TEST_ENDPOINT,
      key: process.env.RGW_TEST_ACCESS_KEY_ID ?? '',
      secret: process.env.RGW_TEST_SECRET_ACCESS_KEY ?? '',
      log: join(dirname(conf), 'log/rgw.log'),
      stop: () => {},
    };
  }
  const clusterDir = join(dir, 'cluster');
  const r = spawnSync(clusterScript, ['start', clusterDir, '--rgw'], {
    encoding: 'utf8',
    // Three archives of the image; the memstore holds them in RAM, and locked ones cannot be deleted.
    env: { ...process.env, CEPH_TEST_MEMSTORE_BYTES: String(Math.max(4096 * MiB, SIZE * 2)) },
  });
  if (r.status !== 0) throw new Error(`starting the test gateway failed: ${r.stderr}`);
  const value = (name: string) => new RegExp(`^${name}=(.*)$`, 'm').exec(r.stdout)?.[1] ?? '';
  return {
    endpoint: value('RGW_TEST_ENDPOINT'),
    key: value('RGW_TEST_ACCESS_KEY_ID'),
    secret: value('RGW_TEST_SECRET_ACCESS_KEY'),
    log: join(clusterDir, 'log/rgw.log'),
    stop: () => void spawnSync(clusterScript, ['stop', clusterDir]),
  };
}

/** The access-log lines (beast's `"METHOD /bucket/key?query HTTP/1.1" status`) after `from` bytes of `log`. */
async function requestsSince(log: string, from: number): Promise<string[]> {
  const handle = await open(log, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(size - from);
    await handle.read(buffer, 0, buffer.length, from);
    return buffer
      .toString('utf8')
      .split('\n')
      .flatMap((line) => /beast: \S+ \S+ - \S+ \[[^\]]*\] "([A-Z]+ \S+) HTTP/.exec(line)?.[1] ?? []);
  } finally {
    await handle.close();
  }
}

interface Counted {
  retention: number;
  put: number;
  all: number;
}

/** The requests of `lines` to `buckets`: PutObjectRetention, PutObject (a PUT of an object), all. */
function count(lines: string[], buckets: string[]): Counted {
  const mine = lines.filter((l) => buckets.some((b) => l.split(' ')[1]!.split(/[/?]/)[1] === b));
  const puts = mine.filter((l) => l.startsWith('PUT '));
  const retention = puts.filter((l) => /[?&]retention(?:[=&]|$)/.test(l)).length;
  const put = puts.filter((l) => /^PUT \/[^/?]+\/[^?]+(?:\?x-id=PutObject)?$/.test(l)).length;
  return { retention, put, all: mine.length };
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

type Variant = 'plain' | 'step1' | 'step7d';
const LABEL: Record<Variant, string> = {
  plain: '(a) plain bucket',
  step1: '(b) compliance, step 1 s',
  step7d: '(c) compliance, step 7d',
};

interface Result {
  seconds: number;
  rss: number;
  requests: Counted;
  chunksExtended: number | null;
  chunksWritten: number;
}

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
  const base = `backy-bench-lock-${process.pid}`;
  const buckets: Record<Variant, string[]> = {
    plain: [`${base}-plain`],
    step1: [`${base}-s1`, `${base}-s1-leases`],
    step7d: [`${base}-s7`, `${base}-s7-leases`],
  };
  await client.send(new CreateBucketCommand({ Bucket: buckets.plain[0] }));
  for (const v of ['step1', 'step7d'] as const) {
    await client.send(new CreateBucketCommand({ Bucket: buckets[v][0], ObjectLockEnabledForBucket: true }));
    await client.send(new CreateBucketCommand({ Bucket: buckets[v][1] }));
  }
  const storeOptions = (v: Variant) => [
    'type=s3',
    `endpoint=${rgw.endpoint}`,
    `bucket=${buckets[v][0]}`,
    'prefix=vm/',
    ...(v === 'plain'
      ? []
      : [
          `object-lock.lease-bucket=${buckets[v][1]}`,
          'object-lock.mode=compliance',
          'object-lock.margin=1h',
          `object-lock.step=${v === 'step1' ? '1' : '7d'}`,
        ]),
  ];
  const image = join(dir, 'vm.img');
  await writeVmImage(image, SIZE);
  console.log(
    `backy Object Lock benchmark: ${(SIZE / 1024 ** 3).toFixed(2)} GiB VM-like image (${(((await stat(image)).blocks * 512) / 1e6) | 0} MB allocated), one run; S3 is Ceph RGW ${rgw.endpoint} on a memstore OSD on this host`,
  );
  const variants = ['plain', 'step1', 'step7d'] as const;
  const archive = (v: Variant) => join(dir, v);
  const full: Record<string, number> = {};
  for (const v of variants) {
    timed(['-b', archive(v), 'init', ...storeOptions(v).flatMap((o) => ['--store', o]), 'file', image], env);
    full[v] = timed(['-b', archive(v), 'backup', 'daily'], env);
  }
  await changeBlocks(image, SIZE, Math.max(1, Math.round(SIZE / (4 * MiB) / 100)));
  const results = {} as Record<Variant, Result>;
  for (const v of variants) {
    await rm(rssFile, { force: true });
    const from = (await stat(rgw.log)).size;
    const seconds = timed(['-b', archive(v), 'backup', 'daily'], env);
    // The gateway writes its log line after the answer: a moment for the last ones.
    await new Promise((r) => setTimeout(r, 500));
    const requests = count(await requestsSince(rgw.log, from), buckets[v]);
    const status = spawnSync(process.execPath, [BACKY_BIN, '-b', archive(v), 'status', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
    const last = JSON.parse(status.stdout).revisions.at(-1) as {
      stats: { chunksWritten: number };
      retention?: { chunksExtended?: number };
    };
    results[v] = {
      seconds,
      rss: Number((await readFile(rssFile, 'utf8')).trim()),
      requests,
      chunksExtended: last.retention == null ? null : (last.retention.chunksExtended ?? 0),
      chunksWritten: last.stats.chunksWritten,
    };
  }
  const cols = [
    'variant',
    'full',
    'incremental',
    '× (a)',
    'PutObjectRetention',
    'PutObject',
    'requests',
    'chunks_extended',
    'chunks written',
    'RSS',
  ];
  const widths = [26, 8, 12, 7, 19, 10, 9, 16, 15, 7];
  const row = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join(' ')
      .trimEnd();
  console.log(row(cols));
  for (const v of variants) {
    const r = results[v];
    console.log(
      row([
        LABEL[v],
        `${full[v]!.toFixed(1)} s`,
        `${r.seconds.toFixed(2)} s`,
        (r.seconds / results.plain.seconds).toFixed(2),
        String(r.requests.retention),
        String(r.requests.put),
        String(r.requests.all),
        r.chunksExtended == null ? '-' : String(r.chunksExtended),
        String(r.chunksWritten),
        `${(r.rss / 1e6).toFixed(0)} MB`,
      ]),
    );
  }
  console.log(
    "incremental after 1% of the 4 MiB regions changed; requests: the incremental's to the archive's buckets (data and lease bucket), from the gateway's access log; RSS: backy's peak",
  );
} finally {
  rgw.stop();
  await rm(dir, { recursive: true, force: true });
}
