import { randomBytes } from 'node:crypto';
import { DeleteObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { testChunkStore } from '@backy/core/testing';
import { rgwSkip } from '@backy/test-env/rgw';
import { beforeAll, inject } from 'vitest';
import { openTestStore, tamperObject, testBucket } from './fixture.js';

// The store contract's suite against the S3 driver on a real Ceph RGW: each check on a prefix of its own.
const rgw = inject('rgw');
const skip = rgw.skip != null ? rgwSkip('store-s3 conformance') : null;
let bucket = '';
let client: S3Client;

beforeAll(async () => {
  if (rgw.skip != null) return;
  ({ bucket, client } = await testBucket(rgw));
});

testChunkStore({
  name: 's3 (Ceph RGW)',
  catalog: true,
  skip,
  async makeStore({ codec }) {
    if (rgw.skip != null) throw new Error(rgw.skip);
    const prefix = `conformance/${randomBytes(6).toString('hex')}/`;
    const key = (hash: string) => `${prefix}chunks/${hash.slice(0, 2)}/${hash}`;
    return {
      store: openTestStore(rgw, bucket, prefix, codec),
      reopen: async () => openTestStore(rgw, bucket, prefix, codec),
      tamper: (hash) => tamperObject(client, bucket, key(hash)),
      remove: async (hash) => {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key(hash) }));
      },
      cleanup: async () => {},
    };
  },
});
