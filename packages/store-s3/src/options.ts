import { z } from 'zod';

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
}

// The type is written out (not `z.infer`) so that the published declarations do not name zod;
// options.test.ts holds the schema to it.
export const s3OptionsSchema = z.strictObject({
  endpoint: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  bucket: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name (3-63 of a-z 0-9 . -)'),
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
});
