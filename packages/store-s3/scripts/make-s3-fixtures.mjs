// Writes test-fixtures/main-2026-12/ with the built @backy/core and @backy/store-s3 (run `npx tsup` in
// both first) against the gateway RGW_TEST_ENDPOINT names (`scripts/ceph-test-cluster start DIR --rgw`):
// a plain and an encrypted archive in a bucket, layout chunked, two revisions each, and every object
// the bucket then holds, as files. They were made once with main's code before the storage stack was
// split into backend and repository (issue 25); test/main-fixtures.test.ts uploads them and holds every
// later version to attaching, verifying and restoring them byte for byte. Do not regenerate them.
//
//   node packages/store-s3/scripts/make-s3-fixtures.mjs packages/store-s3/test-fixtures/main-2026-12
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Archive, newKeyFile, writeKeyFile } from '@backy/core';
import { backUpMainFixture, MAIN_FIXTURE_PASSPHRASE } from '@backy/core/testing';
import { s3StoreDriver } from '../dist/index.js';

// pino is @backy/core's dependency, not this package's.
const pino = createRequire(createRequire(import.meta.url).resolve('@backy/core/package.json'))('pino');

const BUCKET = `backy-fixture-${Date.now()}`;

const env = process.env;
process.env.AWS_ACCESS_KEY_ID = env.RGW_TEST_ACCESS_KEY_ID;
process.env.AWS_SECRET_ACCESS_KEY = env.RGW_TEST_SECRET_ACCESS_KEY;
const client = new S3Client({
  endpoint: env.RGW_TEST_ENDPOINT,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: env.RGW_TEST_ACCESS_KEY_ID, secretAccessKey: env.RGW_TEST_SECRET_ACCESS_KEY },
});
await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
const logger = pino({ level: 'silent' });
const out = resolve(process.argv[2] ?? 'test-fixtures/main-2026-12');
const work = join(out, '.work');
await rm(out, { recursive: true, force: true });
const manifest = {};
for (const kind of ['plain', 'encrypted']) {
  const dir = join(out, kind);
  await mkdir(dir, { recursive: true });
  const store = { type: 's3', endpoint: env.RGW_TEST_ENDPOINT, bucket: BUCKET, prefix: `${kind}/` };
  if (kind === 'encrypted') {
    await writeFile(join(dir, 'passphrase'), `${MAIN_FIXTURE_PASSPHRASE}\n`, { mode: 0o600 });
    await writeKeyFile(join(dir, 'backup.key'), await newKeyFile(MAIN_FIXTURE_PASSPHRASE));
    store.encryption = { 'key-file': join(dir, 'backup.key'), 'passphrase-file': join(dir, 'passphrase') };
  }
  const archive = await Archive.init(
    join(work, kind),
    { source: { type: 'fixture' }, layout: 'chunked', store },
    { stores: { s3: s3StoreDriver } },
  );
  manifest[kind] = await backUpMainFixture(archive, logger);
  const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${kind}/` }));
  for (const { Key } of listed.Contents ?? []) {
    const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key }));
    const path = join(dir, 'bucket', Key.slice(`${kind}/`.length));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, Buffer.from(await got.Body.transformToByteArray()));
  }
}
await rm(work, { recursive: true, force: true });
await writeFile(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
