import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { type CodecName, Repository, type StoreKey } from '@backy/core/store';
import { type RgwEndpoint, s3ClientConfig } from '@backy/test-env/rgw';
import { S3Objects } from '../src/objects.js';
import { type S3Options, s3OptionsSchema } from '../src/options.js';
import { S3Backend } from '../src/s3-backend.js';

/** A bucket of its own for a test file, on the test gateway. */
export async function testBucket(rgw: RgwEndpoint): Promise<{ bucket: string; client: S3Client }> {
  const client = new S3Client(s3ClientConfig(rgw));
  const bucket = `backy-test-${randomBytes(4).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return { bucket, client };
}

/** The environment the s3 driver reads its credentials from, for the test gateway. */
export function credentialsEnv(rgw: RgwEndpoint): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey };
}

export function s3Options(rgw: RgwEndpoint, bucket: string, prefix: string): S3Options {
  return s3OptionsSchema.parse({ endpoint: rgw.endpoint, bucket, prefix, region: rgw.region });
}

/** A store on the test gateway; credentials from the environment, as an operator gives them. */
export function openTestStore(
  rgw: RgwEndpoint,
  bucket: string,
  prefix: string,
  codec: CodecName = 'zstd',
  key?: StoreKey,
): Repository {
  return new Repository(openTestBackend(rgw, bucket, prefix), { codec, key });
}

/** The backend of a store on the test gateway. */
export function openTestBackend(rgw: RgwEndpoint, bucket: string, prefix: string): S3Backend {
  Object.assign(process.env, credentialsEnv(rgw));
  return new S3Backend(new S3Objects(s3Options(rgw, bucket, prefix), null));
}

/** Flips a byte in the middle of a stored object, behind backy's back. */
export async function tamperObject(client: S3Client, bucket: string, key: string): Promise<void> {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = Buffer.from(await out.Body!.transformToByteArray());
  bytes[bytes.length >> 1]! ^= 0xff;
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
}
