import { randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import { DeleteBucketPolicyCommand, PutBucketPolicyCommand, type S3Client } from '@aws-sdk/client-s3';
import { hashChunk, isBackyError, Repository } from '@backy/core/store';
import { rgwSkip } from '@backy/test-env/rgw';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { S3Objects } from '../src/objects.js';
import { s3OptionsSchema } from '../src/options.js';
import { S3Backend } from '../src/s3-backend.js';
import { credentialsEnv, openTestStore, testBucket } from './fixture.js';

// What the store meets on a bad day. Throttling and a full bucket are answered by a proxy in front of
// the real gateway, in S3's own words (RGW 16.2 has no request rate limits, and its quota statistics are
// updated lazily): the proxy sends what AWS and RGW send, `503 SlowDown` and `403 QuotaExceeded` with an
// S3 error document, and passes every other request through to RGW unchanged (the signature covers the
// Host header, which it keeps).
const rgw = inject('rgw');
const skip = rgw.skip != null ? rgwSkip('store-s3 faults') : null;
let bucket = '';
let client: S3Client;

type Fault = (method: string, count: number) => { status: number; code: string } | null;

/** A proxy to the gateway that answers with `fault` where it says so. Counts what it faked. */
async function faultyProxy(
  fault: Fault,
): Promise<{ endpoint: string; faked: () => number; close: () => Promise<void> }> {
  if (rgw.skip != null) throw new Error(rgw.skip);
  const target = new URL(rgw.endpoint);
  let count = 0;
  let faked = 0;
  const server: Server = createServer((req, res) => {
    const answer = fault(req.method ?? 'GET', count++);
    if (answer != null) {
      faked++;
      req.resume();
      res.writeHead(answer.status, { 'content-type': 'application/xml' });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${answer.code}</Code><Message>${answer.code}</Message><RequestId>proxy-${count}</RequestId></Error>`,
      );
      return;
    }
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    faked: () => faked,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function storeAt(endpoint: string, prefix: string): Repository {
  if (rgw.skip != null) throw new Error(rgw.skip);
  Object.assign(process.env, credentialsEnv(rgw));
  const options = s3OptionsSchema.parse({ endpoint, bucket, prefix, region: rgw.region });
  return new Repository(new S3Backend(new S3Objects(options, null)), { codec: 'zstd' });
}

async function chunk(): Promise<{ data: Buffer; hash: string }> {
  const data = randomBytes(256 * 1024);
  return { data, hash: await hashChunk(data) };
}

beforeAll(async () => {
  if (rgw.skip != null) return;
  ({ bucket, client } = await testBucket(rgw));
});

describe.skipIf(skip != null)('the S3 store on a bad day', () => {
  let closeAll: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const close of closeAll) await close();
    closeAll = [];
  });

  it('rides out throttling: 503 SlowDown is retried with back-off and the data arrives intact', async () => {
    // Two of every three requests are throttled.
    const proxy = await faultyProxy((_m, n) => (n % 3 !== 2 ? { status: 503, code: 'SlowDown' } : null));
    closeAll.push(proxy.close);
    const store = storeAt(proxy.endpoint, 'throttled/');
    await store.init();
    const { data, hash } = await chunk();
    expect((await store.put(hash, data)).written).toBeGreaterThan(0);
    expect((await store.get(hash)).equals(data)).toBe(true);
    expect(proxy.faked()).toBeGreaterThanOrEqual(4);
  });

  it('gives up on a store that throttles every request, in one line after its retries', async () => {
    const proxy = await faultyProxy(() => ({ status: 503, code: 'SlowDown' }));
    closeAll.push(proxy.close);
    const store = storeAt(proxy.endpoint, 'throttled/');
    const { data, hash } = await chunk();
    const error = await store.put(hash, data).catch((e: unknown) => e);
    expect(isBackyError(error, 'IO')).toBe(true);
    expect((error as Error).message).toMatch(
      /^looking for chunk [0-9a-f]{64}: s3:\/\/\S+\/throttled\/ \(http:\/\/127\.0\.0\.1:\d+\): the store is throttling requests \((SlowDown|HTTP 503)\), still after 6 attempts with back-off$/,
    );
    expect(proxy.faked()).toBe(6);
  });

  it('says a full bucket is full (QuotaExceeded), and what was stored stays readable', async () => {
    const direct = openTestStore(rgw as never, bucket, 'full/');
    await direct.init();
    const before = await chunk();
    await direct.put(before.hash, before.data);
    const proxy = await faultyProxy((method) =>
      method === 'PUT' ? { status: 403, code: 'QuotaExceeded' } : null,
    );
    closeAll.push(proxy.close);
    const store = storeAt(proxy.endpoint, 'full/');
    const { data, hash } = await chunk();
    const error = await store.put(hash, data).catch((e: unknown) => e);
    expect(isBackyError(error, 'NO_SPACE')).toBe(true);
    expect((error as Error).message).toMatch(/: the bucket is full \(QuotaExceeded\)$/);
    expect((await store.get(before.hash)).equals(before.data)).toBe(true);
  });

  it('says a read-only bucket denies writes (a real RGW bucket policy), and reads still work', async () => {
    const store = openTestStore(rgw as never, bucket, 'readonly/');
    await store.init();
    const before = await chunk();
    await store.put(before.hash, before.data);
    const policy = {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Deny',
          Principal: '*',
          Action: ['s3:PutObject'],
          Resource: [`arn:aws:s3:::${bucket}/readonly/*`],
        },
      ],
    };
    await client.send(new PutBucketPolicyCommand({ Bucket: bucket, Policy: JSON.stringify(policy) }));
    try {
      const { data, hash } = await chunk();
      const error = await store.put(hash, data).catch((e: unknown) => e);
      expect(isBackyError(error)).toBe(true);
      expect((error as Error).message).toMatch(
        /^writing chunk [0-9a-f]{64}: s3:\/\/\S+\/readonly\/ \(\S+\): access denied: the credentials may not do this \(read-only bucket or policy\?\)$/,
      );
      expect((await store.get(before.hash)).equals(before.data)).toBe(true);
    } finally {
      await client.send(new DeleteBucketPolicyCommand({ Bucket: bucket }));
    }
  });
});
