import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ProvidedRgw, rgwFromEnv, rgwSkip, s3ClientConfig, setupRgw } from './rgw.js';

const skip = rgwSkip('test-env');

describe('a gateway named by the environment (RGW_TEST_ENDPOINT, as ceph-test-cluster --rgw prints it)', () => {
  it('is used with its keys, signed for us-east-1 unless RGW_TEST_REGION says otherwise', () => {
    const env = {
      RGW_TEST_ENDPOINT: 'http://127.0.0.1:7480',
      RGW_TEST_ACCESS_KEY_ID: 'AK',
      RGW_TEST_SECRET_ACCESS_KEY: 'SK',
    };
    const rgw = { endpoint: 'http://127.0.0.1:7480', accessKeyId: 'AK', secretAccessKey: 'SK' };
    expect(rgwFromEnv(env)).toEqual({ ...rgw, region: 'us-east-1' });
    expect(rgwFromEnv({ ...env, RGW_TEST_REGION: 'default' })).toEqual({ ...rgw, region: 'default' });
    expect(rgwFromEnv({})).toBeNull();
    expect(() => rgwFromEnv({ RGW_TEST_ENDPOINT: 'http://x' })).toThrow(/RGW_TEST_ACCESS_KEY_ID/);
    expect(s3ClientConfig({ ...rgw, region: 'us-east-1' })).toMatchObject({
      credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
      forcePathStyle: true,
    });
  });
});

/** The HTTP status an S3 call ends with, refusals included. */
const status = (call: Promise<{ $metadata: { httpStatusCode?: number } }>) =>
  call.then(
    (r) => r.$metadata.httpStatusCode,
    (error: { $metadata?: { httpStatusCode?: number } }) => {
      if (error.$metadata?.httpStatusCode == null) throw error;
      return error.$metadata.httpStatusCode;
    },
  );

describe.skipIf(skip != null)('the S3 gateway on the Ceph test cluster (setupRgw)', () => {
  let provided: ProvidedRgw | undefined;
  let teardown: (() => Promise<void>) | undefined;
  let s3: S3Client;
  let endpoint: string;
  const bucket = `test-env-${process.pid}-${Date.now()}`;

  beforeAll(async () => {
    teardown = await setupRgw({
      name: 'test-env',
      provide: (_key, value) => {
        provided = value;
      },
    });
    if (provided == null || provided.skip != null) throw new Error(`no gateway: ${JSON.stringify(provided)}`);
    endpoint = provided.endpoint;
    s3 = new S3Client(s3ClientConfig(provided));
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  }, 300_000);

  afterAll(async () => {
    s3?.destroy();
    await teardown?.();
  }, 120_000);

  it('provides a loopback endpoint and keys', () => {
    expect(provided).toMatchObject({ skip: null, region: expect.any(String) });
    expect(endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(provided).toHaveProperty('accessKeyId', expect.stringMatching(/./));
    expect(provided).toHaveProperty('secretAccessKey', expect.stringMatching(/./));
  });

  it('puts, lists, gets and deletes an object through the AWS SDK', async () => {
    const body = Buffer.from('hello from backy\n');
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'dir/a', Body: body }));
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'dir/' }));
    expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([['dir/a', body.length]]);
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'dir/a' }));
    expect(Buffer.from(await got.Body!.transformToByteArray())).toEqual(body);
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'dir/a' }));
    expect((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'dir/' }))).KeyCount).toBe(0);
    expect(await status(s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'dir/a' })))).toBe(404);
  });

  // What a lock or a compare-and-swap on the object store can build on (RGW 16.2: If-Match only with
  // the ETag unquoted; rgw.ts has the details).
  it('honours If-None-Match: * and an unquoted If-Match on PutObject', async () => {
    const put = (Body: string, condition: { IfNoneMatch?: string; IfMatch?: string }) =>
      s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'lock', Body, ...condition }));
    const text = async () =>
      (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'lock' }))).Body!.transformToString();
    expect(await status(put('first', { IfNoneMatch: '*' }))).toBe(200);
    expect(await status(put('second', { IfNoneMatch: '*' }))).toBe(412);
    expect(await text()).toBe('first');
    const stale = (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'lock' }))).ETag!;
    const current = (await put('update', {})).ETag!;
    const unquoted = (etag: string) => etag.replaceAll('"', '');
    expect(await status(put('stale', { IfMatch: unquoted(stale) }))).toBe(412);
    expect(await text()).toBe('update');
    expect(await status(put('swapped', { IfMatch: unquoted(current) }))).toBe(200);
    expect(await text()).toBe('swapped');
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'lock' }));
  });

  it('stops: nothing answers on the endpoint afterwards (a gateway RGW_TEST_ENDPOINT names is kept)', async () => {
    await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
    s3.destroy();
    await teardown!();
    teardown = undefined;
    const answer = await fetch(endpoint).then(
      (r) => r.status,
      () => 'refused',
    );
    if (rgwFromEnv() != null) expect(answer).toBeTypeOf('number');
    else expect(answer).toBe('refused');
  });
});
