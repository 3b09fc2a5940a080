import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeleteBucketPolicyCommand,
  GetObjectCommand,
  PutBucketPolicyCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { MiB } from '@backy/core/testing';
import { describe, expect, it } from 'vitest';
import { locked, objectLockHarness } from './object-lock-fixture.js';

// `backy verify` checks that the store retains every object of a retained revision long enough, and
// extends what it can; `backy backup --retain-until` gives a revision a minimum retention (real RGW).
const lock = objectLockHarness('store-s3 object lock verify');
const { skip, backy, ok, lockedBucket, revisions, archiveWith, retentionOf, chunkKeys } = lock;
const DAY = 86_400_000;

/** Writes `key` again as a new current version with the same bytes and no retention, behind backy's back. */
async function unretainedCopy(bucket: string, key: string): Promise<void> {
  const out = await lock.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const body = Buffer.from(await out.Body!.transformToByteArray());
  await lock.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** The current version's retain-until (ms), 0 when it has none. */
const untilOf = (bucket: string, key: string) =>
  retentionOf(bucket, key).then(
    (r) => r.until,
    () => 0,
  );

interface VerifyJson {
  uuid: string;
  result: string;
  retention: {
    checked: number;
    fixed: number;
    failed: { object: string; retainedUntil: string | null; requiredUntil: string; reason: string }[];
  } | null;
}

describe.skipIf(skip != null)('S3 Object Lock: verify and --retain-until (Ceph RGW)', () => {
  it('verify extends a chunk and a map retained too short, then finds nothing to fix; one it cannot extend fails verify but keeps the revision verified', async () => {
    const { bucket, leases } = await lockedBucket();
    const img = join(lock.dir, 'v1.img');
    await writeFile(img, randomBytes(8 * MiB));
    const archive = await archiveWith(
      'v1',
      bucket,
      img,
      locked(leases, 'mode=governance', 'margin=1h', 'step=1d'),
    );
    ok(['-b', archive, 'backup', 'daily']);
    const [rev] = revisions(archive);
    const until = Date.parse(rev!.retention!.until);
    const chunksUntil = Date.parse(rev!.retention!.chunksUntil);
    const [chunk, other] = await chunkKeys(bucket, 'v1/');
    const map = `v1/revisions/${rev!.uuid}.map`;
    // A new current version without retention: the old one stays retained, but a read gets this one.
    await unretainedCopy(bucket, chunk!);
    await unretainedCopy(bucket, map);
    expect(await untilOf(bucket, chunk!)).toBe(0);
    expect(await untilOf(bucket, map)).toBe(0);

    const text = ok(['-b', archive, 'verify']).stdout;
    expect(text).toContain(`${rev!.uuid}: verified`);
    expect(text).toMatch(/retention: 2 objects were retained too short by the store; extended/);
    expect(await untilOf(bucket, chunk!)).toBe(chunksUntil);
    expect(await untilOf(bucket, map)).toBeGreaterThanOrEqual(until);
    expect(await untilOf(bucket, other!)).toBeGreaterThanOrEqual(chunksUntil);

    const again: VerifyJson[] = JSON.parse(ok(['-b', archive, 'verify', '--json']).stdout).revisions;
    expect(again).toEqual([
      expect.objectContaining({
        uuid: rev!.uuid,
        result: 'verified',
        retention: { checked: 4, fixed: 0, failed: [] },
      }),
    ]);

    // A chunk the credentials may not retain (an explicit Deny): reported, exit 1, trust unchanged.
    await unretainedCopy(bucket, other!);
    const deny = {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Deny',
          Principal: { AWS: ['*'] },
          Action: ['s3:PutObjectRetention'],
          Resource: [`arn:aws:s3:::${bucket}/v1/chunks/*`],
        },
      ],
    };
    await lock.client.send(new PutBucketPolicyCommand({ Bucket: bucket, Policy: JSON.stringify(deny) }));
    try {
      const r = backy(['-b', archive, 'verify', '--json']);
      expect(r.code, r.stderr).toBe(1);
      const [result] = JSON.parse(r.stdout).revisions as VerifyJson[];
      expect(result!.result).toBe('verified');
      expect(result!.retention!.fixed).toBe(0);
      expect(result!.retention!.failed).toEqual([
        {
          object: `chunk ${other!.split('/').at(-1)}`,
          retainedUntil: null,
          requiredUntil: new Date(chunksUntil).toISOString(),
          reason: expect.stringMatching(/refused to retain/),
        },
      ]);
      expect(revisions(archive)[0]!).toMatchObject({ trust: 'verified' });
    } finally {
      await lock.client.send(new DeleteBucketPolicyCommand({ Bucket: bucket }));
    }
    expect(await untilOf(bucket, other!)).toBe(0);
  });

  it('backup --retain-until gives a manual revision at least that retention, its .rev read back so; a bad value or a store without Object Lock is one usage error', async () => {
    const { bucket, leases } = await lockedBucket();
    const img = join(lock.dir, 'v2.img');
    await writeFile(img, randomBytes(MiB));
    const archive = await archiveWith(
      'v2',
      bucket,
      img,
      locked(leases, 'mode=compliance', 'margin=1h', 'manual=1d', 'step=1'),
    );
    const before = Date.now();
    ok(['-b', archive, 'backup', '--retain-until', '40d', 'manual:keep']);
    const after = Date.now();
    const iso = new Date(after + 50 * DAY).toISOString();
    ok(['-b', archive, 'backup', '--retain-until', iso, 'manual:keep2']);
    const [first, second] = revisions(archive);
    const until = Date.parse(first!.retention!.until);
    expect(until).toBeGreaterThanOrEqual(before + 40 * DAY);
    expect(until).toBeLessThanOrEqual(after + 40 * DAY);
    expect(await retentionOf(bucket, `v2/revisions/${first!.uuid}.rev`)).toEqual({
      mode: 'COMPLIANCE',
      until,
    });
    expect(second!.retention!.until).toBe(iso);
    expect((await retentionOf(bucket, `v2/revisions/${second!.uuid}.rev`)).until).toBe(Date.parse(iso));

    for (const [value, message] of [
      ['soon', /--retain-until: invalid date or duration "soon"/],
      ['2020-01-01', /--retain-until: 2020-01-01 is in the past/],
    ] as const) {
      const r = backy(['-b', archive, 'backup', '--retain-until', value, 'manual:x']);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
    // A local archive: its store has no Object Lock.
    const plain = join(lock.dir, 'v2-plain');
    ok(['-b', plain, 'init', 'file', img]);
    const r = backy(['-b', plain, 'backup', '--retain-until', '40d', 'manual:x']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--retain-until: .* has no Object Lock \(store\.object-lock\)/);
    expect(revisions(plain)).toHaveLength(0);
  });
});
