/**
 * A real S3 endpoint for the tests: Ceph's S3 gateway (radosgw) on the throw-away Ceph test cluster
 * (`scripts/ceph-test-cluster start DIR --rgw`), on 127.0.0.1 with a user of its own. A package's
 * vitest.config.ts starts one for all its test files through `setupRgw` (a globalSetup), its tests get
 * it with `inject('rgw')`.
 *
 * What RGW 16.2 (Pacific) does and does not do, as measured against this gateway: PutObject honours
 * `If-None-Match: *` (412 when the key exists; of 8 concurrent creates exactly one wins) and
 * `If-Match: ETAG` only with the ETag WITHOUT its quotes (quoted, as S3 sends it, never matches: 412
 * even for the current one); DeleteObject ignores If-Match; the SDK's default flexible checksums fail
 * on a streamed body (411, aws-chunked), hence `requestChecksumCalculation: 'WHEN_REQUIRED'` below.
 */
import { cephMissing, startCephCluster } from './ceph.js';

/** Where a gateway answers and who the tests are there. */
export interface RgwEndpoint {
  /** `http://127.0.0.1:PORT`; buckets are addressed by path (`forcePathStyle`). */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The region requests are signed for (the gateway accepts any; us-east-1 sends no LocationConstraint). */
  region: string;
  /**
   * A second user of the gateway (uid `writer`, `arn:aws:iam:::user/writer` in bucket policies), for
   * append-only tests; absent when the gateway's environment names none.
   */
  writer?: { accessKeyId: string; secretAccessKey: string };
}

/** What a test run's global setup has: a gateway, or why the S3 tests skip. */
export type TestRgw = (RgwEndpoint & { skip: null; stop(): Promise<void> }) | { skip: string };

/** What `setupRgw` provides to the tests as `inject('rgw')`. */
export type ProvidedRgw = (RgwEndpoint & { skip: null }) | { skip: string };

declare module 'vitest' {
  export interface ProvidedContext {
    rgw: ProvidedRgw;
  }
}

const ENV = {
  endpoint: 'RGW_TEST_ENDPOINT',
  accessKeyId: 'RGW_TEST_ACCESS_KEY_ID',
  secretAccessKey: 'RGW_TEST_SECRET_ACCESS_KEY',
  region: 'RGW_TEST_REGION',
} as const;
const DEFAULT_REGION = 'us-east-1';

/**
 * The gateway RGW_TEST_ENDPOINT names (with RGW_TEST_ACCESS_KEY_ID, RGW_TEST_SECRET_ACCESS_KEY and
 * optionally RGW_TEST_REGION, the names `ceph-test-cluster start DIR --rgw` prints), or null. Throws
 * when the endpoint is set without its keys.
 */
export function rgwFromEnv(env: NodeJS.ProcessEnv = process.env): RgwEndpoint | null {
  const endpoint = env[ENV.endpoint];
  if (!endpoint) return null;
  const accessKeyId = env[ENV.accessKeyId];
  const secretAccessKey = env[ENV.secretAccessKey];
  if (!accessKeyId || !secretAccessKey) {
    throw new Error(`${ENV.endpoint} is set, but ${ENV.accessKeyId} or ${ENV.secretAccessKey} is not`);
  }
  const writerKey = env.RGW_TEST_WRITER_ACCESS_KEY_ID;
  const writerSecret = env.RGW_TEST_WRITER_SECRET_ACCESS_KEY;
  return {
    endpoint,
    accessKeyId,
    secretAccessKey,
    region: env[ENV.region] || DEFAULT_REGION,
    ...(writerKey && writerSecret
      ? { writer: { accessKeyId: writerKey, secretAccessKey: writerSecret } }
      : {}),
  };
}

/**
 * Why the S3 tests cannot run here (the gateway, Ceph or the cluster script missing,
 * BACKY_SKIP_CEPH=1), or null; null too when RGW_TEST_ENDPOINT names a running gateway.
 */
export function rgwMissing(): string | null {
  if (process.env[ENV.endpoint]) return null;
  const missing = cephMissing('radosgw', 'radosgw-admin');
  if (missing != null) return missing;
  if (process.env.BACKY_SKIP_CEPH === '1') return 'BACKY_SKIP_CEPH=1 is set';
  return null;
}

/** Prints why the S3 tests of `label` skip; under CI=true, where everything is installed, throws instead. */
function reportSkip(label: string, reason: string): string {
  if (process.env.CI === 'true') throw new Error(`S3 tests must not be skipped under CI=true: ${reason}`);
  console.warn(`[${label}] S3 gateway tests skipped: ${reason}`);
  return reason;
}

/** `rgwMissing()`, printed with `label` when the tests will skip; under CI=true that throws instead. */
export function rgwSkip(label: string): string | null {
  const reason = rgwMissing();
  return reason == null ? null : reportSkip(label, reason);
}

/**
 * Starts a Ceph test cluster with the gateway in a new temporary directory (about 20-30 s); on failure
 * nothing is left running. CEPH_TEST_MEMSTORE_BYTES sizes the OSD (default 4 GiB, held in RAM as far as
 * it is used).
 */
export async function startRgw(): Promise<RgwEndpoint & { stop(): Promise<void> }> {
  const cluster = await startCephCluster({ rgw: true });
  const { printed } = cluster;
  const gateway = rgwFromEnv(printed);
  if (gateway == null) {
    await cluster.stop();
    throw new Error(`ceph-test-cluster --rgw printed no ${ENV.endpoint}: ${JSON.stringify(printed)}`);
  }
  return { ...gateway, stop: cluster.stop };
}

/**
 * The gateway for a test run: the one RGW_TEST_ENDPOINT names (already running, left running), a new
 * one, or the reason there is none. Whether a skip is allowed (not under CI=true) is the caller's to
 * decide (`rgwSkip`, `setupRgw`).
 */
export async function testRgw(): Promise<TestRgw> {
  const existing = rgwFromEnv();
  if (existing != null) return { ...existing, skip: null, stop: async () => {} };
  const missing = rgwMissing();
  if (missing != null) return { skip: missing };
  return { ...(await startRgw()), skip: null };
}

/**
 * A Vitest globalSetup: starts the gateway for all test files of the project and provides it as
 * `inject('rgw')`; returns the teardown. Without radosgw the tests get `{ skip }` and the reason is
 * printed; under CI=true it throws instead. A package's test/global-setup.ts:
 *
 *   export { setupRgw as default } from '@backy/test-env/rgw';
 */
export async function setupRgw(project: {
  /** The project's name, for the skip message (Vitest's TestProject has both). */
  name: string;
  provide(key: 'rgw', value: ProvidedRgw): void;
}): Promise<() => Promise<void>> {
  const rgw = await testRgw();
  if (rgw.skip != null) {
    project.provide('rgw', { skip: reportSkip(project.name, rgw.skip) });
    return async () => {};
  }
  const { stop, ...provided } = rgw;
  project.provide('rgw', provided);
  return stop;
}

/**
 * The `S3Client` options for a gateway (assignable to the SDK's `S3ClientConfig`, without importing
 * the SDK here): path-style buckets, and checksums only where an operation requires them, because RGW
 * 16.2 refuses the SDK's default aws-chunked uploads of streamed bodies (411 MissingContentLength).
 */
export function s3ClientConfig(rgw: RgwEndpoint) {
  // The SDK's multi-line notice that its 2027 releases need Node 22 is not the tests' business.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return {
    endpoint: rgw.endpoint,
    region: rgw.region,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
  };
}
