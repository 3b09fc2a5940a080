import type {
  Backend,
  BackendCapabilities,
  BackendObject,
  LoadOptions,
  SaveOptions,
} from '@backy/core/store';
import type { ObjectInfo, S3Objects } from './objects.js';

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

  constructor(private readonly objects: S3Objects) {
    this.location = objects.url;
    this.capabilities = {
      conditionalWrites: true,
      // A copy and a delete: a reader may see both names for a moment, never neither.
      atomicMove: false,
      localPath: null,
      concurrency: objects.options.concurrency,
    };
  }

  /** Checks the bucket: backy does not create buckets. */
  init(): Promise<void> {
    return this.objects.checkBucket();
  }

  async saveOnce(name: string, data: Uint8Array): Promise<BackendObject | null> {
    const etag = await this.objects.put(name, data, `writing ${said(name)}`, { ifNoneMatch: '*' });
    return etag == null ? null : { name, bytes: data.byteLength, version: etag };
  }

  async save(name: string, data: Uint8Array, options: SaveOptions = {}): Promise<BackendObject | null> {
    const condition = options.ifVersion == null ? undefined : { ifMatch: options.ifVersion };
    const etag = await this.objects.put(name, data, `writing ${said(name)}`, condition);
    return etag == null ? null : { name, bytes: data.byteLength, version: etag };
  }

  load(name: string, options: LoadOptions = {}): Promise<Buffer | null> {
    return this.objects.get(name, `reading ${said(name)}`, options.pooled ?? false, options.range);
  }

  async stat(name: string): Promise<BackendObject | null> {
    const info = await this.objects.head(name, `looking for ${said(name)}`);
    return info == null ? null : toObject(info);
  }

  async *list(prefix: string): AsyncIterable<BackendObject> {
    for await (const item of this.objects.list(prefix, `listing ${prefix}`)) yield toObject(item);
  }

  async remove(name: string): Promise<void> {
    await this.objects.delete(name, `deleting ${said(name)}`);
  }

  /**
   * A DELETE with If-Match, which AWS honours; Ceph RGW 16.2 ignores it (it deletes whatever is there),
   * so the ETag is compared by a HEAD first: there, a rewrite landing between the HEAD and the DELETE
   * is lost (a window of one request, where a lease's holder renews every 20 s).
   */
  async removeVersion(name: string, version: string): Promise<boolean> {
    const what = `deleting ${said(name)}`;
    if ((await this.objects.head(name, what))?.etag !== version) return false;
    return this.objects.delete(name, what, version);
  }

  async move(from: string, to: string): Promise<boolean> {
    if ((await this.objects.head(from, `moving ${said(from)} to ${to}`)) == null) return false;
    await this.objects.copy(from, to, `moving ${said(from)} to ${to}`);
    await this.objects.delete(from, `moving ${said(from)} to ${to}`);
    return true;
  }
}

const toObject = (info: ObjectInfo): BackendObject => ({
  name: info.key,
  bytes: info.bytes,
  version: info.etag,
});

/**
 * An object as messages name it, as before the backend was split from the store: `chunk <hash>`,
 * `<id>.rev`, else its key.
 */
function said(name: string): string {
  const chunk = /^chunks\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(name);
  if (chunk != null) return `chunk ${chunk[1]}`;
  return name.startsWith('revisions/') ? name.slice('revisions/'.length) : name;
}
