import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  ListObjectVersionsCommand,
  type ListObjectVersionsCommandOutput,
  PutObjectCommand,
  PutObjectRetentionCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { createCredentialChain, fromEnv, fromIni } from '@aws-sdk/credential-providers';
import { BackyError, chunkBuffers } from '@backy/core/store';
import { errorCode, httpStatus, isNotFound, isPreconditionFailed, s3Error } from './errors.js';
import type { S3Options } from './options.js';

export interface ObjectInfo {
  key: string;
  bytes: number;
  etag: string;
  modified: number;
  /** Object Lock's retain-until of the current version (ms), from HEAD only; null: not retained. */
  retainUntil?: number | null;
}

/** One version of an object in a versioned bucket (a delete marker too). */
export interface ObjectVersion {
  versionId: string;
  deleteMarker: boolean;
}

/** Object Lock's retention of a PUT. */
export interface Retention {
  mode: 'governance' | 'compliance';
  until: number;
}

/** A PUT's precondition: only if the key is absent (`*`), or only over the version `etag`. */
export type PutCondition = { ifNoneMatch: '*' } | { ifMatch: string };

/** Retries of a throttled or failed request (the SDK's standard mode: exponential back-off with jitter). */
const MAX_ATTEMPTS = 6;
/** The first wait before a body is read again, doubled each time (0.1 s to 1.6 s, as the SDK's base). */
const BODY_RETRY_MS = 100;

/**
 * The bucket and prefix of one store, as keys relative to the prefix; every failure a one-line
 * BackyError (see s3Error). The AWS SDK v3 is the client: the S3 ecosystem's reference implementation,
 * with SigV4, the standard credential sources and retries with back-off for 503 SlowDown built in.
 */
export class S3Objects {
  readonly client: S3Client;
  /** `s3://bucket/prefix`, for messages. */
  readonly url: string;
  private readonly where: { url: string; endpoint: string };

  constructor(
    readonly options: S3Options,
    credentialsFile: string | null,
    /** The profile to read (default: `options.profile`, else AWS_PROFILE). */
    profileName?: string,
  ) {
    this.url = `s3://${options.bucket}/${options.prefix}`;
    this.where = { url: this.url, endpoint: options.endpoint };
    // Only the environment and the shared credentials file: no instance-metadata probing of the network.
    const profile = profileName ?? options.profile ?? process.env.AWS_PROFILE;
    const credentials =
      credentialsFile != null
        ? fromIni({ filepath: credentialsFile, configFilepath: credentialsFile, profile })
        : createCredentialChain(fromEnv(), fromIni({ profile }));
    // The SDK warns on every start under Node < 22 that its releases after January 2027 will need 22: not
    // the operator's to act on (this package fixes the SDK range), and it would break one-line output.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: options['path-style'],
      credentials,
      maxAttempts: MAX_ATTEMPTS,
      retryMode: 'standard',
      // Checksums only where S3 requires them: S3-compatible stores (older Ceph RGW, MinIO) reject or
      // mishandle the newer SDK's default trailing checksums. backy checks every chunk against its hash.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  key(name: string): string {
    return `${this.options.prefix}${name}`;
  }

  fail(error: unknown, what: string): never {
    throw s3Error(error, what, this.where);
  }

  async checkBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.options.bucket }));
    } catch (error) {
      // HEAD answers carry no error code: say "does not exist" for a 404 in words.
      if (isNotFound(error))
        this.fail(Object.assign(new Error('NoSuchBucket'), { Code: 'NoSuchBucket' }), 'opening the store');
      this.fail(error, 'opening the store');
    }
  }

  /** Whether the bucket keeps versions (versioning Enabled or Suspended). */
  async versioned(): Promise<boolean> {
    try {
      const out = await this.client.send(new GetBucketVersioningCommand({ Bucket: this.options.bucket }));
      return out.Status != null;
    } catch (error) {
      this.fail(error, "reading the bucket's versioning");
    }
  }

  /** Whether the bucket has Object Lock enabled (and so versioning). */
  async objectLockEnabled(): Promise<boolean> {
    try {
      const out = await this.client.send(
        new GetObjectLockConfigurationCommand({ Bucket: this.options.bucket }),
      );
      return out.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
    } catch (error) {
      if (errorCode(error) === 'ObjectLockConfigurationNotFoundError' || httpStatus(error) === 404)
        return false;
      this.fail(error, "reading the bucket's Object Lock configuration");
    }
  }

  /**
   * Extends the current version's retention to `retention.until` (PutObjectRetention). False when the
   * store refused because it would shorten a longer one (or the credentials may not): the caller looks.
   */
  async putRetention(name: string, retention: Retention, what: string): Promise<boolean> {
    try {
      await this.client.send(
        new PutObjectRetentionCommand({
          Bucket: this.options.bucket,
          Key: this.key(name),
          Retention: { Mode: lockMode(retention.mode), RetainUntilDate: new Date(retention.until) },
        }),
      );
      return true;
    } catch (error) {
      if (errorCode(error) === 'AccessDenied' || httpStatus(error) === 403) return false;
      if (isNotFound(error)) return false;
      this.fail(error, what);
    }
  }

  /** Every version of exactly `name` (delete markers too), in a versioned bucket. */
  async versions(name: string, what: string): Promise<ObjectVersion[]> {
    const key = this.key(name);
    const out: ObjectVersion[] = [];
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    for (;;) {
      let page: ListObjectVersionsCommandOutput;
      try {
        page = await this.client.send(
          new ListObjectVersionsCommand({
            Bucket: this.options.bucket,
            Prefix: key,
            KeyMarker: keyMarker,
            VersionIdMarker: versionMarker,
          }),
        );
      } catch (error) {
        this.fail(error, what);
      }
      for (const v of page.Versions ?? [])
        if (v.Key === key && v.VersionId != null) out.push({ versionId: v.VersionId, deleteMarker: false });
      for (const m of page.DeleteMarkers ?? [])
        if (m.Key === key && m.VersionId != null) out.push({ versionId: m.VersionId, deleteMarker: true });
      if (!page.IsTruncated) return out;
      keyMarker = page.NextKeyMarker;
      versionMarker = page.NextVersionIdMarker;
    }
  }

  /**
   * Deletes one version for good. False when Object Lock retains it (403 "forbidden by object lock").
   */
  async deleteVersion(name: string, versionId: string, what: string): Promise<boolean> {
    try {
      await this.client.send(
        new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(name), VersionId: versionId }),
      );
      return true;
    } catch (error) {
      if (isNotFound(error)) return true;
      if (errorCode(error) === 'AccessDenied' || httpStatus(error) === 403) return false;
      this.fail(error, what);
    }
  }

  /**
   * The object's bytes, or null when there is none. `pooled`: in a buffer of the chunk pool when it fits
   * (hand it back with `chunkBuffers.release`). A body that breaks off or does not have the length the
   * answer announced is read again (the SDK retries the request, not the body), and after MAX_ATTEMPTS
   * an IO error: never a short buffer taken for the object, which a chunk's hash check would then call
   * damaged.
   */
  async get(
    name: string,
    what: string,
    pooled = false,
    range?: { offset: number; length: number },
  ): Promise<Buffer | null> {
    if (range != null && range.length === 0) return Buffer.alloc(0);
    for (let attempt = 1; ; attempt++) {
      let out: GetObjectCommandOutput;
      try {
        out = await this.client.send(
          new GetObjectCommand({
            Bucket: this.options.bucket,
            Key: this.key(name),
            ...(range == null ? {} : { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` }),
          }),
        );
      } catch (error) {
        if (isNotFound(error)) return null;
        // A range that starts past the end: no bytes there.
        if (range != null && httpStatus(error) === 416) return Buffer.alloc(0);
        this.fail(error, what);
      }
      try {
        return await readBody(out, pooled, range);
      } catch (error) {
        if (attempt >= MAX_ATTEMPTS) throw this.bodyError(name, what, error);
        await new Promise((resolve) => setTimeout(resolve, BODY_RETRY_MS * 2 ** (attempt - 1)));
      }
    }
  }

  /** A body that could not be read whole, in one line naming the object (`s3://bucket/key`). */
  private bodyError(name: string, what: string, error: unknown): BackyError {
    const why =
      error instanceof BodyMismatch
        ? error.message
        : `the body broke off (${errorCode(error) ?? (error as Error)?.message ?? error})`;
    return new BackyError(
      'IO',
      `${what}: s3://${this.options.bucket}/${this.key(name)} (${this.options.endpoint}): ${why}, still after ${MAX_ATTEMPTS} attempts`,
      { cause: error },
    );
  }

  /** The object's ETag, size and time, or null. */
  async head(name: string, what: string): Promise<ObjectInfo | null> {
    try {
      const out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.key(name) }),
      );
      return {
        key: name,
        bytes: out.ContentLength ?? 0,
        etag: out.ETag ?? '',
        modified: out.LastModified?.getTime() ?? 0,
        retainUntil: out.ObjectLockRetainUntilDate?.getTime() ?? null,
      };
    } catch (error) {
      if (isNotFound(error)) return null;
      this.fail(error, what);
    }
  }

  /**
   * Writes the object whole (a PUT is atomic: readers see the old object or the new one); resolves with
   * its ETag. With a condition that does not hold: null.
   */
  async put(
    name: string,
    body: Uint8Array,
    what: string,
    condition?: PutCondition,
    retention?: Retention,
  ): Promise<string | null> {
    try {
      const out = await this.client.send(
        new PutObjectCommand({
          Bucket: this.options.bucket,
          Key: this.key(name),
          Body: body,
          ContentLength: body.byteLength,
          ...(retention == null
            ? {}
            : {
                ObjectLockMode: lockMode(retention.mode),
                ObjectLockRetainUntilDate: new Date(retention.until),
              }),
          // Objects an append-only writer puts must stay readable by the bucket owner (admin credentials).
          ...(this.options['append-only'] ? { ACL: 'bucket-owner-full-control' as const } : {}),
          ...(condition == null
            ? {}
            : 'ifNoneMatch' in condition
              ? { IfNoneMatch: condition.ifNoneMatch }
              : // Ceph RGW 16.2 matches If-Match only against the bare ETag (quoted: always 412).
                { IfMatch: condition.ifMatch.replaceAll('"', '') }),
        }),
      );
      return out.ETag ?? '';
    } catch (error) {
      if (condition != null && isPreconditionFailed(error)) return null;
      this.fail(error, what);
    }
  }

  /**
   * Deletes the object; with `ifMatch`, only while it has that ETag (false when it had another). Ceph
   * RGW 16.2 ignores If-Match on a DELETE (measured: a wrong ETag deletes too), so callers compare first.
   */
  async delete(name: string, what: string, ifMatch?: string): Promise<boolean> {
    try {
      await this.client.send(
        new DeleteObjectCommand({
          Bucket: this.options.bucket,
          Key: this.key(name),
          ...(ifMatch == null ? {} : { IfMatch: ifMatch.replaceAll('"', '') }),
        }),
      );
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      if (ifMatch != null && isPreconditionFailed(error)) return false;
      this.fail(error, what);
    }
  }

  async copy(from: string, to: string, what: string): Promise<void> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.options.bucket,
          Key: this.key(to),
          CopySource: `${this.options.bucket}/${encodeURIComponent(this.key(from)).replaceAll('%2F', '/')}`,
        }),
      );
    } catch (error) {
      this.fail(error, what);
    }
  }

  /** Every object under `prefix` (relative to the store's), in key order. */
  async *list(prefix: string, what: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    const strip = this.options.prefix.length;
    do {
      let out: ListObjectsV2CommandOutput;
      try {
        out = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.options.bucket,
            Prefix: this.key(prefix),
            ContinuationToken: token,
          }),
        );
      } catch (error) {
        this.fail(error, what);
      }
      for (const item of out.Contents ?? []) {
        if (item.Key == null) continue;
        yield {
          key: item.Key.slice(strip),
          bytes: item.Size ?? 0,
          etag: item.ETag ?? '',
          modified: item.LastModified?.getTime() ?? 0,
        };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token != null);
  }
}

const lockMode = (mode: Retention['mode']) => (mode === 'governance' ? 'GOVERNANCE' : 'COMPLIANCE');

/** A body of another length than the answer announced (or than the range asked for). */
class BodyMismatch extends Error {}

/**
 * How many bytes the body must have: the announced Content-Length, and for a range what it asked for
 * (less only at the object's end, which Content-Range tells). Null when the answer announces nothing.
 */
function expectedLength(
  out: GetObjectCommandOutput,
  range?: { offset: number; length: number },
): number | null {
  const announced = out.ContentLength ?? null;
  if (range == null) return announced;
  const parts = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(out.ContentRange ?? '');
  if (parts == null)
    throw new BodyMismatch(
      `the answer to a range request has no Content-Range (${out.ContentRange ?? 'none'})`,
    );
  const [start, end] = [Number(parts[1]), Number(parts[2])];
  const total = parts[3] === '*' ? null : Number(parts[3]);
  const wanted = total == null ? range.length : Math.min(range.length, total - range.offset);
  if (start !== range.offset || end - start + 1 !== wanted || (announced != null && announced !== wanted))
    throw new BodyMismatch(
      `asked for bytes ${range.offset}-${range.offset + wanted - 1}, the answer holds ${out.ContentRange} (${announced ?? '?'} bytes)`,
    );
  return wanted;
}

/** The whole body, checked against the length the answer announced; an unread one is let go. */
async function readBody(
  out: GetObjectCommandOutput,
  pooled: boolean,
  range?: { offset: number; length: number },
): Promise<Buffer> {
  try {
    return await readChecked(out, expectedLength(out, range), pooled);
  } catch (error) {
    // Else the connection stays taken by a body nobody reads.
    (out.Body as { destroy?: () => void } | undefined)?.destroy?.();
    throw error;
  }
}

async function readChecked(
  out: GetObjectCommandOutput,
  length: number | null,
  pooled: boolean,
): Promise<Buffer> {
  const short = (got: number) =>
    new BodyMismatch(`the body has ${got} bytes, the answer announced ${length} (Content-Length)`);
  if (pooled && length != null && length <= chunkBuffers.slotBytes) {
    // Straight into a pooled buffer: no concatenation copy, and memory the pool reuses.
    const buffer = chunkBuffers.acquire(length);
    let at = 0;
    try {
      for await (const part of out.Body as AsyncIterable<Uint8Array>) {
        if (at + part.length > length)
          throw new BodyMismatch(`the body has more than the ${length} bytes the answer announced`);
        buffer.set(part, at);
        at += part.length;
      }
      if (at !== length) throw short(at);
    } catch (error) {
      chunkBuffers.release(buffer);
      throw error;
    }
    return buffer.subarray(0, at);
  }
  const bytes = await out.Body!.transformToByteArray();
  if (length != null && bytes.byteLength !== length) throw short(bytes.byteLength);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
