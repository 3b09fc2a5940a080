import { randomBytes } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { testBackend } from '@backy/core/testing';
import { rgwSkip } from '@backy/test-env/rgw';
import { beforeAll, inject } from 'vitest';
import { openTestBackend, testBucket } from './fixture.js';

// The backend contract's suite against the S3 backend on a real Ceph RGW: each check on a prefix of its own.
const rgw = inject('rgw');
const skip = rgw.skip != null ? rgwSkip('store-s3 backend conformance') : null;
let bucket = '';
let _client: S3Client;

beforeAll(async () => {
  if (rgw.skip != null) return;
  ({ bucket, client: _client } = await testBucket(rgw));
});

testBackend({
  name: 's3 (Ceph RGW)',
  skip,
  async makeBackend() {
    if (rgw.skip != null) throw new Error(rgw.skip);
    const prefix = `backend/${randomBytes(6).toString('hex')}/`;
    return {
      backend: openTestBackend(rgw, bucket, prefix),
      reopen: async () => openTestBackend(rgw, bucket, prefix),
      cleanup: async () => {},
    };
  },
});
