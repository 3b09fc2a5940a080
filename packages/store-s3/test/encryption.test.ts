/**
 * Client-side encryption on a real S3 gateway (radosgw): the encryption layer of @backy/core over the
 * S3 driver, unchanged. The conformance suite on an encrypted S3 store, then an archive end to end:
 * every object in the bucket is scanned for plaintext of the image, a new host restores with the config
 * and the key, a wrong key and a tampered map fail in one line.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Archive, isBackyError, newKeyFile, runBackup, type StoreDrivers, writeKeyFile } from '@backy/core';
import { type ChunkStore, Repository } from '@backy/core/store';
import {
  captureLogger,
  encryptedStoreFixture,
  MiB,
  plaintextRuns,
  restoreToBuffer,
  type TempDir,
  tempDir,
  testChunkStore,
  vmLikeData,
} from '@backy/core/testing';
import { type RgwEndpoint, rgwFromEnv, rgwSkip, s3ClientConfig, startRgw } from '@backy/test-env/rgw';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3StoreDriver } from '../src/index.js';
import { s3OptionsSchema } from '../src/options.js';

const skip = rgwSkip('store-s3 encryption');
const BUCKET = 'backy-crypt';
const silent = captureLogger().logger;
const stores: StoreDrivers = { s3: s3StoreDriver };

let rgw: (RgwEndpoint & { stop(): Promise<void> }) | null = null;
let client: S3Client;
let work: TempDir;
let credentials: string;

beforeAll(async () => {
  if (skip != null) return;
  const existing = rgwFromEnv();
  rgw = existing != null ? { ...existing, stop: async () => {} } : await startRgw();
  client = new S3Client(s3ClientConfig(rgw));
  await client.send(new CreateBucketCommand({ Bucket: BUCKET })).catch((error: Error) => {
    if (error.name !== 'BucketAlreadyOwnedByYou' && error.name !== 'BucketAlreadyExists') throw error;
  });
  work = await tempDir('backy-s3-crypt-');
  credentials = join(work.path, 'credentials');
  await writeFile(
    credentials,
    `[default]\naws_access_key_id = ${rgw.accessKeyId}\naws_secret_access_key = ${rgw.secretAccessKey}\n`,
  );
}, 180_000);

afterAll(async () => {
  await work?.cleanup();
  await rgw?.stop();
}, 120_000);

/** Every object under `prefix`: key and body. */
async function objectsUnder(prefix: string): Promise<{ key: string; body: Buffer }[]> {
  const out: { key: string; body: Buffer }[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }),
    );
    for (const item of page.Contents ?? []) {
      const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: item.Key! }));
      out.push({ key: item.Key!, body: Buffer.from(await got.Body!.transformToByteArray()) });
    }
    token = page.NextContinuationToken;
  } while (token != null);
  return out;
}

async function removePrefix(prefix: string): Promise<void> {
  const keys = (await objectsUnder(prefix)).map((o) => ({ Key: o.key }));
  for (let i = 0; i < keys.length; i += 1000)
    await client.send(
      new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: keys.slice(i, i + 1000) } }),
    );
}

const storeOptions = (prefix: string) => ({
  type: 's3',
  endpoint: rgw!.endpoint,
  bucket: BUCKET,
  prefix,
  region: rgw!.region,
  'credentials-file': credentials,
});

testChunkStore({
  name: 'encrypted s3',
  catalog: true,
  skip,
  makeStore: (options) =>
    encryptedStoreFixture(options, async ({ codec, key }) => {
      const prefix = `conformance-${randomBytes(6).toString('hex')}/`;
      const { type: _, ...s3 } = storeOptions(prefix);
      const open = (): ChunkStore =>
        new Repository(
          s3StoreDriver.open(s3OptionsSchema.parse(s3), { archiveDir: work.path, where: 'test', codec }),
          { codec, key },
        );
      const chunkKey = (hash: string) => `${prefix}chunks/${hash.slice(0, 2)}/${hash}`;
      return {
        store: open(),
        reopen: async () => open(),
        cleanup: () => removePrefix(prefix),
        async tamper(hash) {
          const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: chunkKey(hash) }));
          const body = Buffer.from(await got.Body!.transformToByteArray());
          body[body.length >> 1]! ^= 0xff;
          await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: chunkKey(hash), Body: body }));
        },
        async remove(hash) {
          await client.send(
            new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: [{ Key: chunkKey(hash) }] } }),
          );
        },
      };
    }),
});

describe.skipIf(skip != null)('an encrypted archive on S3', () => {
  const backupOf = (archive: Archive, data: Buffer) =>
    runBackup(
      archive,
      {
        async backup(ctx) {
          await ctx.writer.resize(data.length);
          for (let i = 0; i < ctx.writer.chunkCount; i++) {
            const at = i * ctx.writer.chunkSize;
            await ctx.writer.write(i, Buffer.from(data.subarray(at, at + ctx.writer.chunkSize)));
          }
        },
      },
      { tags: ['daily'], logger: silent },
    );

  async function setUp(name: string) {
    const prefix = `${name}-${randomBytes(6).toString('hex')}/`;
    const key = join(work.path, `${prefix.slice(0, -1)}.key`);
    await writeKeyFile(key, await newKeyFile(null));
    const config = {
      source: { type: 'test' },
      store: { ...storeOptions(prefix), encryption: { 'key-file': key } },
    };
    const dir = join(work.path, prefix, 'archive');
    const archive = await Archive.init(dir, config, { stores });
    return { prefix, key, config, archive };
  }

  /** A new host: a new archive directory holding only the config (`Archive.attach` makes it the archive). */
  async function newHost(config: unknown): Promise<string> {
    const dir = join(work.path, `host-${randomBytes(4).toString('hex')}`);
    await mkdir(dir);
    await writeFile(Archive.configPath(dir), JSON.stringify(config));
    return dir;
  }

  it('keeps only ciphertext in the bucket, and a new host restores every revision byte for byte', async () => {
    const { prefix, config, archive } = await setUp('e2e');
    const v1 = vmLikeData(10 * MiB + 123);
    const v2 = Buffer.from(v1);
    v2.write('the second backup changed this', 3 * MiB);
    const first = await backupOf(archive, v1);
    const second = await backupOf(archive, v2);
    expect(second.parent).toBe(first.uuid);
    expect(second.stats.chunks_written).toBe(1);
    const objects = await objectsUnder(prefix);
    expect(objects.filter((o) => o.key.startsWith(`${prefix}revisions/`)).length).toBe(4);
    expect(objects.filter((o) => o.key.startsWith(`${prefix}chunks/`)).length).toBeGreaterThan(3);
    let found = 0;
    for (const { body } of objects) found += plaintextRuns(v1, body) + plaintextRuns(v2, body);
    expect(found).toBe(0);
    for (const { key, body } of objects.filter((o) => o.key.includes('revisions/'))) {
      expect(body.toString('latin1'), key).not.toContain('BKYMAP');
      expect(body.toString('latin1'), key).not.toContain('timestamp');
    }

    const restored = await Archive.attach(await newHost(config), { stores });
    expect((await restored.revisions()).map((r) => r.uuid)).toEqual([first.uuid, second.uuid]);
    expect((await restoreToBuffer(restored, first.uuid)).equals(v1)).toBe(true);
    expect((await restoreToBuffer(restored, second.uuid)).equals(v2)).toBe(true);
  }, 300_000);

  it('refuses a wrong key and a tampered map in one line each', async () => {
    const { key, config, archive } = await setUp('bad');
    await backupOf(archive, vmLikeData(3 * MiB));
    await rm(key);
    await writeKeyFile(key, await newKeyFile(null));
    const wrong = await Archive.attach(await newHost(config), { stores }).catch((e: Error) => e);
    expect(isBackyError(wrong, 'CONFIG_INVALID')).toBe(true);
    expect((wrong as Error).message).toMatch(
      /^wrong key: s3:\/\/.* is encrypted with key [0-9a-f]{16}, the key file .* holds key [0-9a-f]{16}$/,
    );

    // Another archive, with the map in the bucket altered.
    const second = await setUp('tamper');
    const rev2 = await backupOf(second.archive, vmLikeData(3 * MiB));
    const mapKey = `${second.prefix}revisions/${rev2.uuid}.map`;
    const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: mapKey }));
    const body = Buffer.from(await got.Body!.transformToByteArray());
    body[body.length >> 1]! ^= 1;
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: mapKey, Body: body }));
    const tampered = await Archive.attach(await newHost(second.config), { stores }).catch((e: Error) => e);
    expect(isBackyError(tampered, 'REVISION_INVALID')).toBe(true);
    expect((tampered as Error).message).toMatch(
      new RegExp(`^${rev2.uuid}\\.map in s3://.* does not decrypt: the stored object was altered$`),
    );
  }, 300_000);
});
