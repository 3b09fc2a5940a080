import { chmod, cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Archive, runBackup, type StoreDrivers } from '@backy/core';
import {
  bufferSource,
  captureLogger,
  type MainFixtureRevisions,
  mainFixtureImage,
  mainFixtureProblems,
  restoreToBuffer,
  type TempDir,
  tempDir,
} from '@backy/core/testing';
import { rgwSkip } from '@backy/test-env/rgw';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { s3StoreDriver } from '../src/index.js';
import { credentialsEnv, testBucket } from './fixture.js';

// Archives in a bucket written by main before the storage stack was split into backend and repository
// (issue 25), by scripts/make-s3-fixtures.mjs: every object as it was in the bucket. Each test uploads
// them to a prefix of its own; a new host with the config (and the key) must attach, verify and restore
// every revision byte for byte, and leave the stored chunks as they are.
const FIXTURES = fileURLToPath(new URL('../test-fixtures/main-2026-12/', import.meta.url));
const rgw = inject('rgw');
const skip = rgw.skip != null ? rgwSkip('store-s3 main fixtures') : null;
const stores: StoreDrivers = { s3: s3StoreDriver };
const silent = captureLogger().logger;
let bucket = '';
let client: S3Client;
let work: TempDir;

beforeAll(async () => {
  if (rgw.skip != null) return;
  ({ bucket, client } = await testBucket(rgw));
  work = await tempDir('backy-s3-main-fixtures-');
  Object.assign(process.env, credentialsEnv(rgw));
});
afterAll(() => work?.cleanup());

/** The fixture's objects, by key under the prefix. */
async function objects(kind: string): Promise<Map<string, Buffer>> {
  const root = join(FIXTURES, kind, 'bucket');
  const out = new Map<string, Buffer>();
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true }))
    if (entry.isFile()) {
      const path = join(entry.parentPath, entry.name);
      out.set(relative(root, path), await readFile(path));
    }
  return out;
}

/** A new host for the fixture `kind` uploaded under `prefix`: its config (and key), not yet attached. */
async function host(kind: string, prefix: string): Promise<string> {
  for (const [key, body] of await objects(kind))
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}${key}`, Body: body }));
  const dir = join(work.path, prefix);
  await mkdir(dir, { recursive: true });
  const store: Record<string, unknown> = {
    type: 's3',
    endpoint: rgw.skip == null ? rgw.endpoint : '',
    bucket,
    prefix,
  };
  if (kind === 'encrypted') {
    for (const secret of ['backup.key', 'passphrase']) {
      await cp(join(FIXTURES, kind, secret), join(dir, secret));
      await chmod(join(dir, secret), 0o600);
    }
    store.encryption = { 'key-file': 'backup.key', 'passphrase-file': 'passphrase' };
  }
  await writeFile(Archive.configPath(dir), JSON.stringify({ source: { type: 'fixture' }, store }));
  return dir;
}

describe.skipIf(skip != null).each(['plain', 'encrypted'])(
  'the %s S3 archive written by main in 2026-12',
  (kind) => {
    it('attaches, verifies and restores every revision byte for byte, leaves the chunks as they are, and backs up on top', async () => {
      const manifest = JSON.parse(await readFile(join(FIXTURES, 'manifest.json'), 'utf8'));
      const expected = manifest[kind] as MainFixtureRevisions;
      const prefix = `${kind}-${Date.now()}/`;
      const archive = await Archive.attach(await host(kind, prefix), { stores });
      expect(await mainFixtureProblems(archive, expected, silent)).toEqual([]);
      for (const [key, body] of await objects(kind)) {
        if (!key.startsWith('chunks/')) continue;
        const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}${key}` }));
        expect(Buffer.from(await got.Body!.transformToByteArray()).equals(body), key).toBe(true);
      }
      const third = mainFixtureImage(3);
      const rev = await runBackup(
        archive,
        bufferSource(() => third),
        { tags: ['r3'], logger: silent },
      );
      expect(rev.parent).toBe(expected[1]!.id);
      expect(rev.stats.chunks_written).toBe(1);
      expect((await restoreToBuffer(archive, rev.uuid)).equals(third)).toBe(true);
    });
  },
);
