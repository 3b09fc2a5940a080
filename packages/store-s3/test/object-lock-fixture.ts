import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateBucketCommand,
  GetObjectRetentionCommand,
  ListObjectVersionsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { MiB } from '@backy/core/testing';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import { rgwSkip, s3ClientConfig } from '@backy/test-env/rgw';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { credentialsEnv } from './fixture.js';

/** A revision as `backy status --json` prints it, with its Object Lock retention. */
export interface RevJson {
  uuid: string;
  tags: string[];
  timestamp: string;
  retention?: { mode: string; until: string; chunksUntil: string; chunksExtended?: number };
}

/** `store` options for Object Lock with the lease bucket `leases` and `settings` (`mode=…`, `step=…`). */
export const locked = (leases: string, ...settings: string[]) => [
  `object-lock.lease-bucket=${leases}`,
  ...settings.map((s) => `object-lock.${s}`),
];

/**
 * What the Object Lock end-to-end tests share: a scratch directory, an S3 client on the test gateway,
 * the backy CLI, and locked buckets. Call once at a test file's top level (it registers the hooks);
 * `dir`, `client` and `env` are set once `beforeAll` ran.
 */
export function objectLockHarness(label: string) {
  const rgw = inject('rgw');
  const skip = skipWithoutCli(label, rgw.skip != null ? rgwSkip(label) : null);

  const h = {
    rgw,
    skip,
    dir: '',
    client: undefined as unknown as S3Client,
    /** The environment backy runs with: the test gateway's credentials unless a test swaps it. */
    env: {} as NodeJS.ProcessEnv,

    backy(args: string[], extraEnv: Record<string, string> = {}) {
      const r = spawnSync(process.execPath, [BACKY_BIN, ...args], {
        env: { ...h.env, ...extraEnv },
        encoding: 'utf8',
        maxBuffer: 64 * MiB,
      });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    },

    ok(args: string[], extraEnv: Record<string, string> = {}) {
      const r = h.backy(args, extraEnv);
      expect(r.code, `backy ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r;
    },

    /** A bucket with Object Lock (and so versioning) and a plain one for its leases. */
    async lockedBucket(): Promise<{ bucket: string; leases: string }> {
      const bucket = `backy-lock-${randomBytes(4).toString('hex')}`;
      await h.client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
      const leases = `${bucket}-leases`;
      await h.client.send(new CreateBucketCommand({ Bucket: leases }));
      return { bucket, leases };
    },

    revisions(archive: string): RevJson[] {
      return JSON.parse(h.ok(['-b', archive, 'status', '--json']).stdout).revisions;
    },

    /**
     * A new archive (`backy init`) on `bucket` with the extra `store` options (`object-lock.mode=…`, as
     * an operator types them) and, when `schedule` is given, that schedule in its config instead of init's.
     */
    async archiveWith(
      name: string,
      bucket: string,
      image: string,
      store: string[],
      schedule?: string,
    ): Promise<string> {
      const archive = join(h.dir, name);
      const endpoint = rgw.skip == null ? rgw.endpoint : '';
      const options = [`endpoint=${endpoint}`, `bucket=${bucket}`, `prefix=${name}/`, ...store];
      h.ok([
        '-b',
        archive,
        'init',
        '--store',
        'type=s3',
        ...options.flatMap((o) => ['--store', o]),
        'file',
        image,
      ]);
      if (schedule != null) {
        const config = await readFile(join(archive, 'config'), 'utf8');
        await writeFile(join(archive, 'config'), config.replace(/^schedule:\n(?: {2}.*\n)+/m, schedule));
      }
      return archive;
    },

    async retentionOf(bucket: string, key: string): Promise<{ mode?: string; until: number }> {
      const out = await h.client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: key }));
      return { mode: out.Retention?.Mode, until: out.Retention?.RetainUntilDate?.getTime() ?? 0 };
    },

    /** The chunk objects' keys under an archive's prefix. */
    async chunkKeys(bucket: string, prefix: string): Promise<string[]> {
      const out = await h.client.send(
        new ListObjectVersionsCommand({ Bucket: bucket, Prefix: `${prefix}chunks/` }),
      );
      return [...new Set((out.Versions ?? []).map((v) => v.Key!))];
    },

    async versionsOf(bucket: string, key: string): Promise<string[]> {
      const out = await h.client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
      return (out.Versions ?? []).filter((v) => v.Key === key).map((v) => v.VersionId!);
    },
  };

  beforeAll(async () => {
    if (skip != null || rgw.skip != null) return;
    h.dir = join(tmpdir(), `backy-s3-lock-${randomBytes(4).toString('hex')}`);
    await mkdir(h.dir, { recursive: true });
    h.client = new S3Client(s3ClientConfig(rgw));
    h.env = { ...process.env, ...credentialsEnv(rgw) };
  });

  afterAll(async () => {
    if (h.dir) await rm(h.dir, { recursive: true, force: true });
  });

  return h;
}
