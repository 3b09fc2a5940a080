import type { Backend } from '../backend/contract.js';
import { BackyError } from '../errors.js';
import { revisionFileName, revisionIdOfRevFile } from '../format/archive-files.js';
import type { Lock } from '../lock.js';
import type { Fence, RevisionCatalog, RevisionFileKind } from '../store/contract.js';
import { lockWriter, where } from './leases.js';
import { raiseStoreFence, readStoreFence } from './store-fence.js';

/** Written at init: marks the place as a backy store and names the archive it belongs to. */
export const MARKER = 'backy-store.json';
const REVISION_ID_RE = /^[0-9A-Za-z]{22}$/;

interface Marker {
  format: 1;
  archive: string | null;
}

/** The marker of a new store, which no archive has claimed yet. */
export const newMarker = (): Buffer =>
  Buffer.from(JSON.stringify({ format: 1, archive: null } satisfies Marker));

/**
 * The revisions of a store that keeps them (every backend without a local directory):
 * `revisions/<id>.map` and `revisions/<id>.rev`, the marker `backy-store.json` naming the archive the
 * store belongs to, and the archive's one writer, a lease (leases.ts).
 */
export class ObjectCatalog implements RevisionCatalog {
  constructor(private readonly backend: Backend) {}

  private name(id: string, kind: RevisionFileKind): string {
    return `revisions/${revisionFileName(id, kind)}`;
  }

  async list(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for await (const item of this.backend.list('revisions/')) {
      const name = item.name.slice('revisions/'.length);
      const id = revisionIdOfRevFile(name);
      if (id != null && REVISION_ID_RE.test(id)) out.set(id, item.version);
    }
    return out;
  }

  read(id: string, kind: RevisionFileKind): Promise<Buffer | null> {
    return this.backend.load(this.name(id, kind));
  }

  async write(
    id: string,
    kind: RevisionFileKind,
    data: Buffer,
    options: { retainUntil?: number } = {},
  ): Promise<string> {
    return (await this.backend.save(this.name(id, kind), data, options))?.version ?? '';
  }

  async delete(id: string): Promise<void> {
    await this.backend.remove(this.name(id, 'rev'));
    await this.backend.remove(this.name(id, 'map'));
  }

  async retainedUntil(id: string, kind: RevisionFileKind): Promise<number | null | undefined> {
    const info = await this.backend.stat(this.name(id, kind));
    return info == null ? undefined : (info.retainUntil ?? null);
  }

  async retain(id: string, kind: RevisionFileKind, until: number): Promise<number | null> {
    if (this.backend.retain == null)
      throw new BackyError(
        'STORE_INVALID',
        `${this.backend.location}: the backend cannot retain objects (Object Lock)`,
      );
    return this.backend.retain(this.name(id, kind), until);
  }

  lockWriter(options: { fence?: number } = {}): Promise<Lock> {
    return lockWriter(this.backend, options.fence);
  }

  fence(): Promise<Fence | null> {
    return readStoreFence(this.backend);
  }

  raiseFence(token: number, server: string): Promise<Fence | null> {
    return raiseStoreFence(this.backend, token, server);
  }

  private parse(bytes: Buffer): Marker {
    try {
      return JSON.parse(bytes.toString('utf8')) as Marker;
    } catch {
      throw new BackyError(
        'CONFIG_INVALID',
        `${where(this.backend, MARKER)}: not a backy store marker (not JSON)`,
      );
    }
  }

  async archiveId(): Promise<string | null> {
    const bytes = await this.backend.load(MARKER);
    return bytes == null ? null : (this.parse(bytes).archive ?? null);
  }

  async claim(archiveId: string, attempt = 1): Promise<void> {
    const info = await this.backend.stat(MARKER);
    const bytes = info == null ? null : await this.backend.load(MARKER);
    const current = bytes == null ? null : this.parse(bytes);
    if (current?.archive === archiveId) return;
    if (current?.archive != null) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${this.backend.location} belongs to another archive (ID ${current.archive}, this one is ${archiveId}); give each archive its own store.prefix`,
      );
    }
    const body = Buffer.from(JSON.stringify({ format: 1, archive: archiveId } satisfies Marker));
    const done =
      info == null || bytes == null
        ? await this.backend.saveOnce(MARKER, body)
        : await this.backend.save(MARKER, body, { ifVersion: info.version });
    if (done == null) {
      // Changed meanwhile: look again. A marker that never holds still is a store whose conditional
      // writes fail every time (a versioned Ceph RGW 16.2 bucket): stop rather than spin.
      if (attempt >= 8)
        throw new BackyError(
          'STORE_INVALID',
          `${where(this.backend, MARKER)}: claiming the store failed ${attempt} times (its conditional writes always fail: a versioned bucket? see docs/immutable-backups.md)`,
        );
      return this.claim(archiveId, attempt + 1);
    }
  }
}
