import {
  type Backend,
  type BackendCapabilities,
  type BackendObject,
  BackyError,
  type LoadOptions,
  type ObjectLock,
  type SaveOptions,
} from '@backy/core/store';
import type { ObjectInfo, Retention, S3Objects } from './objects.js';

/** The store's marker (@backy/core's repository/catalog.ts): claimed conditionally, so beside the leases. */
const MARKER = 'backy-store.json';

/**
 * The S3 backend: each object a key under the store's prefix (`chunks/ab/<hash>`, `revisions/…`,
 * `locks/…`, `backy-store.json`; the repository of @backy/core decides the names and the bytes). A PUT
 * is atomic and durable once answered; `saveOnce` is a PUT with `If-None-Match: *` and a conditional
 * `save` one with `If-Match` (both honoured by Ceph RGW 16.2, AWS and MinIO), so of two hosts exactly
 * one wins: the leases that lock the store rely on it.
 */
export class S3Backend implements Backend {
  readonly location: string;
  readonly capabilities: BackendCapabilities;
  readonly objectLock: ObjectLock | null;
  readonly appendOnly: boolean;

  constructor(
    private readonly objects: S3Objects,
    /** Opened with the admin credentials (`admin-credentials-file`): deletes are allowed. */
    admin = false,
    /**
     * With Object Lock: the unversioned bucket holding the leases and the store's marker, which are
     * written conditionally (Ceph RGW 16.2 ignores If-None-Match and fails every If-Match on a
     * versioned bucket, measured), and whose renewals would otherwise pile up as versions.
     */
    private readonly leases: S3Objects = objects,
  ) {
    this.location = objects.url;
    const lock = objects.options['object-lock'];
    this.objectLock =
      lock == null
        ? null
        : {
            mode: lock.mode,
            marginMs: lock.margin * 1000,
            stepMs: lock.step * 1000,
            manualMs: lock.manual * 1000,
          };
    this.appendOnly = objects.options['append-only'] && !admin;
    this.capabilities = {
      conditionalWrites: true,
      // A copy and a delete: a reader may see both names for a moment, never neither.
      atomicMove: false,
      localPath: null,
      concurrency: objects.options.concurrency,
    };
  }

  /** Checks the bucket (backy does not create buckets), and with `object-lock` that it has Object Lock. */
  async init(): Promise<void> {
    await this.objects.checkBucket();
    if (this.objectLock == null) return;
    if (!(await this.objects.objectLockEnabled()))
      throw new BackyError(
        'CONFIG_INVALID',
        `store.object-lock: bucket ${this.objects.options.bucket} (${this.objects.options.endpoint}) does not have Object Lock enabled; it can only be enabled when the bucket is created (x-amz-bucket-object-lock-enabled), see docs/immutable-backups.md`,
      );
    await this.leases.checkBucket();
    if (await this.leases.versioned())
      throw new BackyError(
        'CONFIG_INVALID',
        `store.object-lock.lease-bucket: bucket ${this.leases.options.bucket} is versioned; the leases need a bucket without versioning (see docs/immutable-backups.md)`,
      );
  }

  /** The objects `name` is among: the leases and the marker in the lease bucket, the rest in the store's. */
  private at(name: string): S3Objects {
    return name.startsWith('locks/') || name === MARKER ? this.leases : this.objects;
  }

  /** Whether `name`'s bucket keeps versions (a DELETE there only adds a delete marker). */
  private versioned(name: string): boolean {
    return this.objectLock != null && this.at(name) === this.objects;
  }

  private retention(until: number | undefined): Retention | undefined {
    return until == null || this.objectLock == null ? undefined : { mode: this.objectLock.mode, until };
  }

  async saveOnce(
    name: string,
    data: Uint8Array,
    options: Pick<SaveOptions, 'retainUntil'> = {},
  ): Promise<BackendObject | null> {
    const retention = this.retention(options.retainUntil);
    const what = `writing ${said(name)}`;
    const etag = await this.at(name).put(name, data, what, { ifNoneMatch: '*' }, retention);
    return etag == null ? null : { name, bytes: data.byteLength, version: etag };
  }

  async save(name: string, data: Uint8Array, options: SaveOptions = {}): Promise<BackendObject | null> {
    const condition = options.ifVersion == null ? undefined : { ifMatch: options.ifVersion };
    const retention = this.retention(options.retainUntil);
    const etag = await this.at(name).put(name, data, `writing ${said(name)}`, condition, retention);
    return etag == null ? null : { name, bytes: data.byteLength, version: etag };
  }

  /**
   * PutObjectRetention to `until`; the store refuses to shorten a longer retention, and then a HEAD
   * tells what the object has (one request in the usual case, two when it was retained longer already).
   */
  async retain(name: string, until: number): Promise<number | null> {
    const lock = this.objectLock;
    if (lock == null) throw new BackyError('STORE_INVALID', `${this.location}: store.object-lock is not set`);
    const what = `retaining ${said(name)}`;
    if (await this.objects.putRetention(name, { mode: lock.mode, until }, what)) return until;
    const info = await this.objects.head(name, what);
    if (info == null) return null;
    if ((info.retainUntil ?? 0) >= until) return info.retainUntil!;
    throw new BackyError(
      'IO',
      `${what}: s3://${this.objects.options.bucket}/${this.objects.key(name)}: the store refused to retain it until ${new Date(until).toISOString()} (access denied: the credentials may need s3:PutObjectRetention)`,
    );
  }

  load(name: string, options: LoadOptions = {}): Promise<Buffer | null> {
    return this.at(name).get(name, `reading ${said(name)}`, options.pooled ?? false, options.range);
  }

  async stat(name: string): Promise<BackendObject | null> {
    const info = await this.at(name).head(name, `looking for ${said(name)}`);
    return info == null ? null : toObject(info);
  }

  async *list(prefix: string): AsyncIterable<BackendObject> {
    for await (const item of this.at(prefix).list(prefix, `listing ${prefix}`)) yield toObject(item);
  }

  async remove(name: string): Promise<void> {
    this.assertMayDelete(name);
    if (!this.versioned(name)) {
      await this.at(name).delete(name, `deleting ${said(name)}`);
      return;
    }
    await this.removeAllVersions(name);
  }

  /** An append-only host's credentials may not delete: one line naming what would. */
  private assertMayDelete(name: string): void {
    if (!this.appendOnly) return;
    throw new BackyError(
      'APPEND_ONLY',
      `${this.location}: deleting ${said(name)} needs the admin credentials: this store's credentials are append-only (store.append-only); expire, forget and purge use store.admin-credentials-file`,
    );
  }

  /**
   * In a versioned (Object Lock) bucket a DELETE only hides an object behind a delete marker; its data
   * stays. Every version is deleted instead (newer ones a concurrent writer adds after the listing
   * stay). A version Object Lock still retains: RETAINED with its retain-until, the rest kept as well.
   */
  private async removeAllVersions(name: string): Promise<void> {
    const what = `deleting ${said(name)}`;
    const info = await this.objects.head(name, what);
    if (info?.retainUntil != null && info.retainUntil > Date.now()) throw retained(name, info.retainUntil);
    for (const version of await this.objects.versions(name, what)) {
      if (await this.objects.deleteVersion(name, version.versionId, what)) continue;
      throw retained(name, info?.retainUntil ?? null);
    }
  }

  /**
   * A DELETE with If-Match, which AWS honours; Ceph RGW 16.2 ignores it (it deletes whatever is there),
   * so the ETag is compared by a HEAD first: there, a rewrite landing between the HEAD and the DELETE
   * is lost (a window of one request, where a lease's holder renews every 20 s).
   */
  async removeVersion(name: string, version: string): Promise<boolean> {
    this.assertMayDelete(name);
    const what = `deleting ${said(name)}`;
    if ((await this.at(name).head(name, what))?.etag !== version) return false;
    if (this.versioned(name)) {
      await this.removeAllVersions(name);
      return true;
    }
    return this.at(name).delete(name, what, version);
  }

  async move(from: string, to: string): Promise<boolean> {
    this.assertMayDelete(from);
    if (this.at(from) !== this.at(to)) throw new Error(`moving ${from} to ${to}: between buckets`);
    if ((await this.at(from).head(from, `moving ${said(from)} to ${to}`)) == null) return false;
    await this.at(from).copy(from, to, `moving ${said(from)} to ${to}`);
    await this.remove(from);
    return true;
  }
}

const toObject = (info: ObjectInfo): BackendObject => ({
  name: info.key,
  bytes: info.bytes,
  version: info.etag,
  ...(info.retainUntil !== undefined ? { retainUntil: info.retainUntil } : {}),
});

/** The error of a delete that Object Lock refuses; `retainUntil` (ms) tells until when, if known. */
function retained(name: string, until: number | null): BackyError {
  const when = until == null ? 'by Object Lock' : `by Object Lock until ${new Date(until).toISOString()}`;
  return Object.assign(new BackyError('RETAINED', `${said(name)} is retained ${when}`), {
    retainUntil: until,
  });
}

/**
 * An object as messages name it, as before the backend was split from the store: `chunk <hash>`,
 * `<id>.rev`, else its key.
 */
function said(name: string): string {
  const chunk = /^chunks\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(name);
  if (chunk != null) return `chunk ${chunk[1]}`;
  return name.startsWith('revisions/') ? name.slice('revisions/'.length) : name;
}
