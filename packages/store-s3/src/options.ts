import { checkDuration } from '@backy/core/store';
import { z } from 'zod';

/** A duration (`30m`, `1d`, `7w` or seconds), in seconds: as every duration of a backy config. */
const durationSchema = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const seconds = checkDuration(value);
  if (typeof seconds === 'number') return seconds;
  ctx.addIssue({ code: 'custom', message: seconds });
  return z.NEVER;
});

/** `store:` of an archive config with `type: s3` (besides `codec`). */
export interface S3Options {
  /** Any S3 API: Ceph RGW, MinIO, AWS (`https://s3.eu-central-1.amazonaws.com`). */
  endpoint: string;
  bucket: string;
  /** Key prefix of this archive inside the bucket, e.g. `web01/`. Default: the bucket's root. */
  prefix: string;
  /** Default us-east-1. */
  region: string;
  /**
   * A shared credentials file (the AWS format, `[default]` with `aws_access_key_id` and
   * `aws_secret_access_key`); relative to the archive. Default: AWS_ACCESS_KEY_ID and
   * AWS_SECRET_ACCESS_KEY, else the profile (AWS_PROFILE, default `default`) in ~/.aws/credentials.
   */
  'credentials-file'?: string;
  /** The profile to read from the credentials file (default: AWS_PROFILE, else `default`). */
  profile?: string;
  /** Bucket in the path (`endpoint/bucket/key`, default) rather than the host name. */
  'path-style': boolean;
  /** Requests to the store at once (default 16). */
  concurrency: number;
  /**
   * S3 Object Lock (docs/immutable-backups.md): the bucket must have it enabled. Durations in seconds
   * once parsed.
   */
  'object-lock'?: {
    mode: 'governance' | 'compliance';
    /** Added to when expiry would first remove a revision (default 1d). */
    margin: number;
    /** Chunks' retention is extended to multiples of this (default 7d): fewer requests. */
    step: number;
    /** Retention of revisions no rule expires (manual tags, `keep: 0`; default 30d). */
    manual: number;
    /**
     * A bucket without versioning for the leases and the store's marker (written conditionally, which
     * a versioned Ceph RGW 16.2 bucket does not honour); same endpoint and prefix.
     */
    'lease-bucket': string;
  };
  /**
   * These credentials may put and read but not delete (an append-only host): leases are released
   * without deleting, and expire, forget and purge use `admin-credentials-file` / `admin-profile`.
   */
  'append-only': boolean;
  /** Credentials for expire, forget and purge (the AWS format, as `credentials-file`); relative to the archive. */
  'admin-credentials-file'?: string;
  /** The profile of the admin credentials (in `admin-credentials-file`, else ~/.aws/credentials). */
  'admin-profile'?: string;
}

// The type is written out (not `z.infer`) so that the published declarations do not name zod;
// options.test.ts holds the schema to it.
const bucketName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name (3-63 of a-z 0-9 . -)');

export const s3OptionsSchema = z.strictObject({
  endpoint: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  bucket: bucketName,
  prefix: z
    .string()
    .refine(
      (p) => p === '' || (p.endsWith('/') && !p.startsWith('/')),
      'must end with "/" and not start with one',
    )
    .default(''),
  region: z.string().min(1).default('us-east-1'),
  'credentials-file': z.string().min(1).optional(),
  profile: z.string().min(1).optional(),
  'path-style': z.boolean().default(true),
  concurrency: z.number().int().min(1).max(256).default(16),
  'object-lock': z
    .strictObject({
      mode: z.enum(['governance', 'compliance'], { error: 'must be governance or compliance' }),
      margin: durationSchema.default(86_400),
      step: durationSchema.default(7 * 86_400),
      manual: durationSchema.default(30 * 86_400),
      'lease-bucket': bucketName,
    })
    .optional(),
  'append-only': z.boolean().default(false),
  'admin-credentials-file': z.string().min(1).optional(),
  'admin-profile': z.string().min(1).optional(),
});
