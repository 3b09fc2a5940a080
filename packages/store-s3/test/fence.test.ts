import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { Archive, raiseFence } from '@backy/core';
import { MiB } from '@backy/core/testing';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import { rgwSkip } from '@backy/test-env/rgw';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { s3StoreDriver } from '../src/index.js';
import { credentialsEnv, openTestStore, testBucket } from './fixture.js';

// Fleet mode with an S3 store and an archive directory per server (docs/fleet.md): the fence in the
// store (`locks/fence`) is what tells a stale server that another one has taken the job.
const rgw = inject('rgw');
const skip = skipWithoutCli('store-s3 fence', rgw.skip != null ? rgwSkip('store-s3 fence') : null);

let dir = '';
let bucket = '';
let client: S3Client;
let env: NodeJS.ProcessEnv;

const backy = (archive: string, ...args: string[]) => {
  const r = spawnSync(process.execPath, [BACKY_BIN, '-b', archive, ...args], { env, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

async function keys(prefix: string, inBucket = bucket): Promise<string[]> {
  const out = await client.send(new ListObjectsV2Command({ Bucket: inBucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

beforeAll(async () => {
  if (skip != null || rgw.skip != null) return;
  dir = join(tmpdir(), `backy-s3-fence-${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  ({ bucket, client } = await testBucket(rgw));
  env = { ...process.env, ...credentialsEnv(rgw) };
  Object.assign(process.env, credentialsEnv(rgw));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(skip != null)("fleet fencing through the store's fence (Ceph RGW)", () => {
  it('two racing raisers through two hosts: the higher token stays, a lower one never overwrites it', async () => {
    const prefix = `race-${randomBytes(3).toString('hex')}/`;
    // Two stores on one prefix, as two hosts have: each its own client and its own conditional writes.
    const [one, two] = [
      openTestStore(rgw, bucket, prefix).catalog!,
      openTestStore(rgw, bucket, prefix).catalog!,
    ];
    for (let round = 1; round <= 3; round++) {
      const [low, high] = [10 * round + 1, 10 * round + 2];
      const [lowResult, highResult] = await Promise.all([
        one.raiseFence(low, 'a'),
        two.raiseFence(high, 'b'),
      ]);
      expect(highResult).toBeNull();
      // The lower raiser either came first (then was raised over) or was told the higher token.
      if (lowResult != null) expect(lowResult).toMatchObject({ token: high, server: 'b' });
      expect(await one.fence()).toMatchObject({ token: high, server: 'b' });
    }
    expect(await one.raiseFence(5, 'a')).toMatchObject({ token: 32 });
    expect(await two.fence()).toMatchObject({ token: 32, server: 'b' });
  });

  it("server A's stale backup (token 1) is refused once server B raised the store's fence to 2; B's commits", async () => {
    const img = join(dir, 'vm1.img');
    await writeFile(img, randomBytes(3 * MiB));
    const a = join(dir, 'server-a', 'vm1');
    const b = join(dir, 'server-b', 'vm1');
    const init = backy(
      a,
      'init',
      '--store',
      'type=s3',
      '--store',
      `endpoint=${rgw.endpoint}`,
      '--store',
      `bucket=${bucket}`,
      '--store',
      'prefix=vm1/',
      'file',
      img,
    );
    expect(init.code, init.stderr).toBe(0);
    // Server B: the same config, attached to the same prefix (its own archive directory).
    await mkdir(b, { recursive: true });
    await writeFile(join(b, 'config'), await readFile(join(a, 'config')));
    const attach = backy(b, 'init', '--attach');
    expect(attach.code, attach.stderr).toBe(0);

    // What each server's fleet member does when it takes the job: its own directory's fence. A's
    // directory never learns of B's token: only the store's fence can refuse A.
    await raiseFence(a, 1, 'a');
    await raiseFence(b, 2, 'b');
    const archiveB = await Archive.open(b, { stores: { s3: s3StoreDriver } });
    expect(await archiveB.store.catalog!.raiseFence(2, 'b')).toBeNull();
    expect(await keys('vm1/locks/')).toContain('vm1/locks/fence');

    const stale = backy(a, 'backup', '--fence', '1', 'daily');
    expect(stale.code, stale.stderr).toBe(69);
    const lines = stale.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /fenced: this backup holds fleet token 1, but the store's fence .*token 2 of server b/,
    );
    expect(await keys('vm1/revisions/')).toEqual([]);
    // The fence was not lowered, and the writer lease was released.
    expect(await archiveB.store.catalog!.fence()).toMatchObject({ token: 2, server: 'b' });
    expect(await keys('vm1/locks/writer')).toEqual([]);

    const current = backy(b, 'backup', '--fence', '2', 'daily');
    expect(current.code, current.stderr).toBe(0);
    expect((await keys('vm1/revisions/')).filter((k) => k.endsWith('.rev'))).toHaveLength(1);
    // A learns of B's revision from the store, as every server does.
    const status = backy(a, 'status', '--json');
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).revisions).toHaveLength(1);
  });

  it('with Object Lock the fence is in the unversioned lease bucket, where its conditional writes hold', async () => {
    // RGW 16.2 fails every If-Match on a versioned bucket: in the locked bucket the fence could never rise.
    const locked = `backy-fence-lock-${randomBytes(4).toString('hex')}`;
    await client.send(new CreateBucketCommand({ Bucket: locked, ObjectLockEnabledForBucket: true }));
    await client.send(new CreateBucketCommand({ Bucket: `${locked}-leases` }));
    const img = join(dir, 'vm2.img');
    await writeFile(img, randomBytes(MiB));
    const a = join(dir, 'server-a', 'vm2');
    const store = [
      'type=s3',
      `endpoint=${rgw.endpoint}`,
      `bucket=${locked}`,
      'prefix=vm2/',
      `object-lock.lease-bucket=${locked}-leases`,
      'object-lock.mode=governance',
    ];
    const init = backy(a, 'init', ...store.flatMap((o) => ['--store', o]), 'file', img);
    expect(init.code, init.stderr).toBe(0);
    await raiseFence(a, 3, 'a');
    const first = backy(a, 'backup', '--fence', '3', 'daily');
    expect(first.code, first.stderr).toBe(0);
    expect(await keys('vm2/locks/', `${locked}-leases`)).toContain('vm2/locks/fence');
    expect(await keys('vm2/locks/', locked)).toEqual([]);
    const archive = await Archive.open(a, { stores: { s3: s3StoreDriver } });
    expect(await archive.store.catalog!.raiseFence(4, 'b')).toBeNull();
    const stale = backy(a, 'backup', '--fence', '3', 'daily');
    expect(stale.code, stale.stderr).toBe(69);
    expect(stale.stderr).toMatch(/store's fence .*token 4 of server b/);
    expect((await keys('vm2/revisions/', locked)).filter((k) => k.endsWith('.rev'))).toHaveLength(1);
  });

  it('--if-newest: a server whose directory missed a slot another server made does nothing (exit 75) and learns of it; --attach joins a directory holding only the config', async () => {
    const img = join(dir, 'vm3.img');
    await writeFile(img, randomBytes(2 * MiB));
    const a = join(dir, 'server-a', 'vm3');
    const b = join(dir, 'server-b', 'vm3');
    const store = ['type=s3', `endpoint=${rgw.endpoint}`, `bucket=${bucket}`, 'prefix=vm3/'];
    const init = backy(a, 'init', ...store.flatMap((o) => ['--store', o]), 'file', img);
    expect(init.code, init.stderr).toBe(0);
    await raiseFence(a, 1, 'a');
    const first = backy(a, 'backup', '--fence', '1', '--if-newest', 'none', 'daily');
    expect(first.code, first.stderr).toBe(0);
    const made = JSON.parse(backy(a, 'status', '--json').stdout).revisions[0].uuid as string;

    // Server B takes the job over with nothing but the config the scheduler writes: it believes the
    // archive empty. Without --attach the directory is refused, as before.
    await mkdir(b, { recursive: true });
    await writeFile(join(b, 'config'), await readFile(join(a, 'config')));
    await raiseFence(b, 2, 'b');
    const unattached = backy(b, 'backup', '--fence', '2', '--if-newest', 'none', 'daily');
    expect(unattached.code).toBe(1);
    expect(unattached.stderr).toMatch(/has no archive ID: .*init --attach/);
    const superseded = backy(b, 'backup', '--fence', '2', '--if-newest', 'none', '--attach', 'daily');
    expect(superseded.code, superseded.stderr).toBe(75);
    const lines = superseded.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(
        `the newest revision is ${made} \\(.*\\), not none: another server backed the archive up meanwhile`,
      ),
    );
    // Nothing was written but the fence; B's directory is the archive now and has A's revision.
    expect((await keys('vm3/revisions/')).filter((k) => k.endsWith('.rev'))).toHaveLength(1);
    expect(await keys('vm3/locks/writer')).toEqual([]);
    expect(await readFile(join(b, 'archive-id'), 'utf8')).toBe(await readFile(join(a, 'archive-id'), 'utf8'));
    await expect(readFile(join(b, `${made}.rev`), 'utf8')).resolves.toContain(made);

    // Told the newest revision it now knows, B backs up; A, which expects that same one, is fenced.
    const next = backy(b, 'backup', '--fence', '2', '--if-newest', made, '--attach', 'daily');
    expect(next.code, next.stderr).toBe(0);
    expect((await keys('vm3/revisions/')).filter((k) => k.endsWith('.rev'))).toHaveLength(2);
    const stale = backy(a, 'backup', '--fence', '1', '--if-newest', made, 'daily');
    expect(stale.code, stale.stderr).toBe(69);
    // The expectation is a revision ID as written: a spec such as `last` is a usage error.
    const bad = backy(b, 'backup', '--if-newest', 'last', 'daily');
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('backy: error: --if-newest: expected a revision ID or none, got "last"');
  });
});
