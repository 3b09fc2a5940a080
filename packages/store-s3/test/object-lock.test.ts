import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  PutBucketPolicyCommand,
  PutObjectRetentionCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { MiB } from '@backy/core/testing';
import { s3ClientConfig } from '@backy/test-env/rgw';
import { describe, expect, it } from 'vitest';
import { locked, objectLockHarness } from './object-lock-fixture.js';

// S3 Object Lock on a real Ceph RGW (docs/immutable-backups.md): revisions and every chunk they
// reference are retained, dedup extends a reused chunk's retention, expire/forget/purge skip what is
// retained, and an append-only host's credentials can back up but not delete.
const lock = objectLockHarness('store-s3 object lock');
const { rgw, skip, backy, ok, lockedBucket, revisions, archiveWith, retentionOf, chunkKeys, versionsOf } =
  lock;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.write(data, 0, data.length, offset);
  } finally {
    await handle.close();
  }
}

/**
 * An S3 request the store refused (403; RGW answers some with no body, which the SDK calls UnknownError).
 * Any other answer is printed, so a flaky refusal shows what it was.
 */
const denied = (error: unknown) => {
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (status !== 403)
    console.error('not refused with 403:', status, (error as Error)?.name, (error as Error)?.message);
  return status === 403;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skip != null)('S3 Object Lock (Ceph RGW)', () => {
  it('retains each revision and every chunk it references, read back with GetObjectRetention; a delete of a retained version fails and loses nothing', async () => {
    const { bucket, leases } = await lockedBucket();
    const img = join(lock.dir, 'vm1.img');
    const data = randomBytes(10 * MiB);
    await writeFile(img, data);
    const archive = await archiveWith(
      'vm1',
      bucket,
      img,
      locked(leases, 'mode=governance', 'margin=1d', 'step=7d'),
    );
    ok(['-b', archive, 'backup', 'daily']);
    const [rev] = revisions(archive);
    // daily keeps 9 × 1 d (init's schedule), plus the margin of 1 d: retained 10 days from its timestamp.
    const until = Date.parse(rev!.retention!.until);
    expect(until - Date.parse(rev!.timestamp)).toBe(10 * 86_400_000);
    expect(rev!.retention!.mode).toBe('governance');
    expect(ok(['-b', archive, 'status']).stdout).toMatch(/retained by Object Lock until \d{4}-\d\d-\d\d /);
    const revKey = `vm1/revisions/${rev!.uuid}.rev`;
    expect(await retentionOf(bucket, revKey)).toEqual({ mode: 'GOVERNANCE', until });
    expect((await retentionOf(bucket, `vm1/revisions/${rev!.uuid}.map`)).until).toBe(until);
    const chunks = await chunkKeys(bucket, 'vm1/');
    expect(chunks).toHaveLength(3);
    for (const key of chunks) {
      const r = await retentionOf(bucket, key);
      expect(r.mode).toBe('GOVERNANCE');
      expect(r.until).toBeGreaterThanOrEqual(until);
      // Rounded up to the 7-day step, shared by the revisions of that step.
      expect(r.until % (7 * 86_400_000)).toBe(0);
    }
    // Deleting the retained version (even as the bucket's owner) is refused by the store.
    const [version] = await versionsOf(bucket, revKey);
    await expect(
      lock.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: revKey, VersionId: version })),
    ).rejects.toThrow(/AccessDenied|forbidden/i);
    // Nor can the retention be shortened.
    await expect(
      lock.client.send(
        new PutObjectRetentionCommand({
          Bucket: bucket,
          Key: revKey,
          Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 60_000) },
        }),
      ),
    ).rejects.toThrow(/AccessDenied|shortens/i);
    // backy itself refuses, in one line, to forget it.
    const forget = backy(['-b', archive, 'forget', '-r', rev!.uuid, '--force']);
    expect(forget.code).not.toBe(0);
    expect(forget.stderr.trim().split('\n')).toHaveLength(1);
    expect(forget.stderr).toMatch(/retained by the store's Object Lock until .*; nothing was forgotten/);
    const out = join(lock.dir, 'vm1.restored');
    ok(['-b', archive, 'restore', '-r', rev!.uuid, out]);
    expect(sha(await readFile(out))).toBe(sha(data));
  });

  it("an incremental extends a reused chunk's retention before it commits (none within one step)", async () => {
    const { bucket, leases } = await lockedBucket();
    const img = join(lock.dir, 'vm2.img');
    await writeFile(img, randomBytes(12 * MiB));
    // A step of one second: every revision reaches past the last one's chunks.
    const archive = await archiveWith(
      'vm2',
      bucket,
      img,
      locked(leases, 'mode=compliance', 'margin=1h', 'step=1'),
    );
    ok(['-b', archive, 'backup', 'daily']);
    const before = new Map<string, number>();
    for (const key of await chunkKeys(bucket, 'vm2/'))
      before.set(key, (await retentionOf(bucket, key)).until);
    await sleep(1100);
    await writeAt(img, 0, randomBytes(MiB));
    ok(['-b', archive, 'backup', 'daily']);
    const [, second] = revisions(archive);
    const until = Date.parse(second!.retention!.until);
    // One chunk new, two reused: the reused ones' retention was extended (and read back so).
    expect(second!.retention!.chunksExtended).toBe(3);
    // The two chunks it reuses now reach past its retention; the one it replaced stays as it was.
    const after: number[] = [];
    for (const [key, old] of before) {
      const now = await retentionOf(bucket, key);
      expect(now.mode).toBe('COMPLIANCE');
      after.push(now.until > old ? now.until : -old);
    }
    expect(after.filter((t) => t >= until)).toHaveLength(2);
    expect(after.filter((t) => t < 0)).toHaveLength(1);

    // A 7-day step: the next revisions of the same step need no request for the chunks they share.
    const weekly = await archiveWith(
      'vm2w',
      bucket,
      img,
      locked(leases, 'mode=compliance', 'margin=1h', 'step=7d'),
    );
    ok(['-b', weekly, 'backup', 'daily']);
    await writeAt(img, 4 * MiB, randomBytes(MiB));
    ok(['-b', weekly, 'backup', 'daily']);
    const [first, next] = revisions(weekly);
    expect(first!.retention!.chunksExtended).toBe(3);
    // Only the new chunk: the two it shares with its parent are retained to the step's end already.
    expect(next!.retention!.chunksExtended).toBe(1);
  });

  it('expire and purge skip what is retained, say until when, and remove it once retention has passed', async () => {
    const { bucket, leases } = await lockedBucket();
    const schedule = 'schedule:\n  t: {interval: 1, keep: 1}\n';
    /** An archive with two revisions tagged t (keep 1 × 1 s): expire would remove the older one. */
    const twoRevisions = async (name: string, settings: string[]) => {
      const img = join(lock.dir, `${name}.img`);
      await writeFile(img, randomBytes(8 * MiB));
      const archive = await archiveWith(
        name,
        bucket,
        img,
        locked(leases, 'mode=governance', ...settings),
        schedule,
      );
      ok(['-b', archive, 'backup', 't']);
      await writeFile(img, randomBytes(8 * MiB));
      await sleep(1100);
      ok(['-b', archive, 'backup', 't']);
      return { archive, img, old: revisions(archive)[0]! };
    };
    // Retained for 10 minutes: expire keeps it, and says until when.
    const kept = await twoRevisions('vm3k', ['margin=10m']);
    const dry = JSON.parse(ok(['-b', kept.archive, 'expire', '--dry-run', '--json']).stdout);
    expect(dry.revisions.find((a: { uuid: string }) => a.uuid === kept.old.uuid).keptBy).toBe('retained');
    const said = ok(['-b', kept.archive, 'expire']).stdout;
    expect(said).toContain(
      `${kept.old.uuid}: tags t expired; kept: retained by Object Lock until ${kept.old.retention!.until}`,
    );
    expect(revisions(kept.archive).map((r) => r.uuid)).toContain(kept.old.uuid);

    // The revision retained 2 s, its chunks to the end of an hour: once expire removed the revision,
    // purge keeps its chunks and says until when.
    const chunks = await twoRevisions('vm3c', ['margin=1', 'step=1h']);
    await sleep(Math.max(0, Date.parse(chunks.old.retention!.until) - Date.now() + 200));
    ok(['-b', chunks.archive, 'expire']);
    expect(revisions(chunks.archive).map((r) => r.uuid)).not.toContain(chunks.old.uuid);
    const held = JSON.parse(ok(['-b', chunks.archive, 'purge', '--json']).stdout);
    expect(held).toMatchObject({ chunksRetained: 2, chunksDeleted: 0 });
    expect(Date.parse(held.retainedUntil)).toBe(Date.parse(chunks.old.retention!.chunksUntil));
    expect(ok(['-b', chunks.archive, 'purge']).stdout).toMatch(
      /kept 2 unreferenced chunks \(8\.0 MiB\) that the store's Object Lock retains until \S+ at the latest/,
    );

    // Everything retained 2 s: then expire removes the revision and purge every version of its chunks.
    const gone = await twoRevisions('vm3g', ['margin=1', 'step=1']);
    await sleep(Math.max(0, Date.parse(gone.old.retention!.chunksUntil) - Date.now() + 200));
    const expire = JSON.parse(ok(['-b', gone.archive, 'expire', '--json']).stdout);
    expect(expire.revisions.find((a: { uuid: string }) => a.uuid === gone.old.uuid).removed).toBe(true);
    const before = await chunkKeys(bucket, 'vm3g/');
    const purge = JSON.parse(ok(['-b', gone.archive, 'purge', '--json']).stdout);
    expect(purge).toMatchObject({ chunksDeleted: 2, chunksRetained: 0 });
    // Gone for good: no version (no delete marker hiding the data) is left of the purged chunks.
    const after = await chunkKeys(bucket, 'vm3g/');
    expect(before.length - after.length).toBe(2);
    const [current] = revisions(gone.archive);
    const out = join(lock.dir, 'vm3.restored');
    ok(['-b', gone.archive, 'restore', '-r', current!.uuid, out]);
    expect(sha(await readFile(out))).toBe(sha(await readFile(gone.img)));
  });

  it('a bucket without Object Lock gets one clear error when retention is asked for', async () => {
    const bucket = `backy-nolock-${randomBytes(4).toString('hex')}`;
    await lock.client.send(new CreateBucketCommand({ Bucket: bucket }));
    const img = join(lock.dir, 'vm4.img');
    await writeFile(img, randomBytes(MiB));
    const archive = join(lock.dir, 'vm4');
    const store = ['type=s3', `endpoint=${rgw.skip == null ? rgw.endpoint : ''}`, `bucket=${bucket}`];
    store.push('prefix=vm4/', ...locked(`${bucket}-leases`, 'mode=compliance'));
    const r = backy(['-b', archive, 'init', ...store.flatMap((o) => ['--store', o]), 'file', img]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /store\.object-lock: bucket backy-nolock-\w+ \(.*\) does not have Object Lock enabled/,
    );
  });
});

describe.skipIf(skip != null || (rgw.skip == null && rgw.writer == null))(
  'an append-only backup host (Ceph RGW, a bucket policy for a second user)',
  () => {
    /** The policy of an append-only host's buckets: put and read, never delete or shorten retention. */
    const policy = (bucket: string) =>
      JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { AWS: ['arn:aws:iam:::user/writer'] },
            Action: [
              's3:PutObject',
              's3:GetObject',
              's3:ListBucket',
              's3:ListBucketVersions',
              's3:PutObjectRetention',
              's3:GetObjectRetention',
              's3:GetBucketObjectLockConfiguration',
              's3:GetBucketVersioning',
            ],
            Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`],
          },
          {
            Effect: 'Deny',
            Principal: { AWS: ['arn:aws:iam:::user/writer'] },
            Action: [
              's3:DeleteObject',
              's3:DeleteObjectVersion',
              's3:BypassGovernanceRetention',
              's3:PutBucketPolicy',
              's3:PutBucketObjectLockConfiguration',
            ],
            Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`],
          },
        ],
      });

    it('backs up, incrementally, verifies and restores with credentials that cannot delete; expire says it needs the admin credentials; an attacker with them deletes nothing', async () => {
      if (rgw.skip != null || rgw.writer == null) return;
      const { bucket, leases } = await lockedBucket();
      for (const b of [bucket, leases])
        await lock.client.send(new PutBucketPolicyCommand({ Bucket: b, Policy: policy(b) }));
      const writerIni = join(lock.dir, 'writer.ini');
      const adminIni = join(lock.dir, 'admin.ini');
      const ini = (k: { accessKeyId: string; secretAccessKey: string }) =>
        `[default]\naws_access_key_id = ${k.accessKeyId}\naws_secret_access_key = ${k.secretAccessKey}\n`;
      await writeFile(writerIni, ini(rgw.writer), { mode: 0o600 });
      await writeFile(adminIni, ini(rgw), { mode: 0o600 });
      // The host's processes see only the credentials files, never the admin's keys in the environment.
      const noEnvKeys = { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' };
      const img = join(lock.dir, 'vm5.img');
      await writeFile(img, randomBytes(12 * MiB));
      const hostEnv = { ...process.env };
      delete hostEnv.AWS_ACCESS_KEY_ID;
      delete hostEnv.AWS_SECRET_ACCESS_KEY;
      const saved = lock.env;
      lock.env = hostEnv;
      try {
        const archive = await archiveWith('vm5', bucket, img, [
          ...locked(leases, 'mode=governance', 'margin=1d'),
          `credentials-file=${writerIni}`,
          'append-only=true',
        ]);
        ok(['-b', archive, 'backup', 'daily'], noEnvKeys);
        const sums = [sha(await readFile(img))];
        await writeAt(img, 2 * MiB, randomBytes(MiB));
        // A second backup takes the writer lease the first released without deleting it.
        ok(['-b', archive, 'backup', 'daily'], noEnvKeys);
        sums.push(sha(await readFile(img)));
        // The host's credentials read each object's retention (HEAD): all long enough, nothing to fix.
        const verified = JSON.parse(ok(['-b', archive, 'verify', '-r', 'all', '--json'], noEnvKeys).stdout);
        for (const r of verified.revisions)
          expect(r.retention).toMatchObject({ fixed: 0, failed: [], checked: expect.any(Number) });
        const revs = revisions(archive);
        expect(revs).toHaveLength(2);
        for (const [i, rev] of revs.entries()) {
          const out = join(lock.dir, `vm5-${i}.restored`);
          ok(['-b', archive, 'restore', '-r', rev.uuid, out], noEnvKeys);
          expect(sha(await readFile(out))).toBe(sums[i]);
        }
        // Expire, forget and purge delete: one line saying they need the admin credentials.
        for (const args of [['expire'], ['purge'], ['forget', '-r', revs[0]!.uuid, '--force']]) {
          const r = backy(['-b', archive, ...args], noEnvKeys);
          expect(r.code, args.join(' ')).not.toBe(0);
          expect(r.stderr.trim().split('\n')).toHaveLength(1);
          expect(r.stderr).toMatch(
            /store\.append-only: this command deletes and needs the admin credentials/,
          );
        }
        // A dry run deletes nothing and works with the host's own credentials.
        ok(['-b', archive, 'expire', '--dry-run'], noEnvKeys);
        // With the admin credentials configured, purge runs (and finds nothing unreferenced).
        const config = await readFile(join(archive, 'config'), 'utf8');
        await writeFile(
          join(archive, 'config'),
          `${config.trimEnd()}\n  admin-credentials-file: ${adminIni}\n`,
        );
        const purge = JSON.parse(ok(['-b', archive, 'purge', '--json'], noEnvKeys).stdout);
        expect(purge.chunksDeleted).toBe(0);
        expect(purge.chunksKept).toBe(4);
      } finally {
        lock.env = saved;
      }

      // An attacker holding the host's credentials: no delete, no shortened retention, nothing lost.
      const attacker = new S3Client({ ...s3ClientConfig(rgw), credentials: rgw.writer });
      const keys = await chunkKeys(bucket, 'vm5/');
      const [rev] = revisions(join(lock.dir, 'vm5'));
      const revKey = `vm5/revisions/${rev!.uuid}.rev`;
      for (const key of [keys[0]!, revKey]) {
        // The .rev has two versions (verify recorded its result); every one must stay.
        const versions = await versionsOf(bucket, key);
        const version = versions.at(-1);
        await expect(attacker.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }))).rejects.toSatisfy(
          denied,
        );
        await expect(
          attacker.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: version })),
        ).rejects.toSatisfy(denied);
        await expect(
          attacker.send(
            new PutObjectRetentionCommand({
              Bucket: bucket,
              Key: key,
              BypassGovernanceRetention: true,
              Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 1000) },
            }),
          ),
        ).rejects.toSatisfy(denied);
        expect(await versionsOf(bucket, key)).toEqual(versions);
      }
      expect(await chunkKeys(bucket, 'vm5/')).toEqual(keys);
    });
  },
);
