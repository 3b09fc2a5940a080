import {
  BackyError,
  CHUNK_HASH,
  type ChunkCheck,
  type ChunkFile,
  type ChunkStore,
  type Codec,
  type CodecName,
  chunkBuffers,
  chunkFileEquals,
  codecByName,
  decodeChunkFile,
  encodeChunkFile,
  isBackyError,
  type Lock,
  type LockMode,
  PutOnce,
  type PutResult,
  parseChunkFile,
  type ReadOptions,
  type RegistryEntry,
  type RevisionCatalog,
  type RevisionFileKind,
  revisionFileName,
  revisionIdOfRevFile,
  type StoreEntry,
  unpooled,
} from '@backy/core/store';
import { lockStore, lockWriter } from './leases.js';
import type { S3Objects } from './objects.js';

const HASH_RE = /^[0-9a-f]{64}$/;
const DAMAGED_SUFFIX = '.damaged';
/** `missing` of more hashes than this lists the store instead of asking for each. */
const LIST_ABOVE = 32;
/** Written at init: marks the prefix as a backy store and names the archive it belongs to. */
const MARKER = 'backy-store.json';
const REVISION_ID_RE = /^[0-9A-Za-z]{22}$/;

interface Marker {
  format: 1;
  archive: string | null;
}

/**
 * A chunk store in an S3 bucket (under a prefix): `chunks/ab/<hash>` in the chunk file format of the
 * local store, the revisions' `.rev` and `.map` under `revisions/`, leases under `locks/` (see
 * leases.ts) and `backy-store.json`. Everything a restore needs is in the bucket.
 */
export class S3ChunkStore implements ChunkStore {
  readonly codec: Codec;
  readonly catalog: RevisionCatalog;
  private readonly puts = new PutOnce();

  constructor(
    private readonly objects: S3Objects,
    codec: CodecName,
  ) {
    this.codec = codecByName(codec);
    this.catalog = new S3Catalog(objects);
  }

  get root(): string {
    return this.objects.url;
  }

  private chunkKey(hash: string): string {
    return `chunks/${hash.slice(0, 2)}/${hash}`;
  }

  async init(): Promise<void> {
    await this.objects.checkBucket();
    const marker: Marker = { format: 1, archive: null };
    await this.objects.put(MARKER, Buffer.from(JSON.stringify(marker)), 'creating the store', {
      ifNoneMatch: '*',
    });
  }

  async exists(): Promise<boolean> {
    return (await this.objects.head(MARKER, 'opening the store')) != null;
  }

  lock(mode: LockMode, waitSeconds = 0): Promise<Lock> {
    return lockStore(this.objects, mode, waitSeconds);
  }

  async has(hash: string): Promise<boolean> {
    return (await this.objects.head(this.chunkKey(hash), `looking for chunk ${hash}`)) != null;
  }

  /**
   * A few hashes: a HEAD each. Many (a parent's whole map): one listing of `chunks/`, a thousand keys a
   * request, since a prefix holds one archive and its store is a few maps' worth of chunks; a HEAD per
   * chunk would be the bulk of an incremental backup's time (measured: 2 × 256 for a 1 GiB image).
   */
  async missing(hashes: Iterable<string>): Promise<string[]> {
    const all = [...hashes];
    if (all.length > LIST_ABOVE) {
      const stored = new Set<string>();
      for await (const entry of this.entries()) if (entry.hash != null) stored.add(entry.hash);
      return all.filter((h) => !stored.has(h));
    }
    const present = await this.mapLimit(all, (h) => this.has(h));
    return all.filter((_, i) => !present[i]);
  }

  put(hash: string, data: Buffer, options: { rewrite?: boolean } = {}): Promise<PutResult> {
    return this.puts.put(hash, () => this.putNew(hash, data, options.rewrite ?? false));
  }

  private async putNew(hash: string, data: Buffer, rewrite: boolean): Promise<PutResult> {
    if (!rewrite && (await this.has(hash))) return { written: 0 };
    const file = await encodeChunkFile(this.codec, data);
    try {
      await this.objects.put(this.chunkKey(hash), file, `writing chunk ${hash}`);
      return { written: file.length };
    } finally {
      chunkBuffers.release(file);
    }
  }

  /** A PUT is durable once S3 has answered it. */
  async flush(): Promise<void> {}

  async get(hash: string, algorithm: ChunkCheck = CHUNK_HASH): Promise<Buffer> {
    return unpooled(await this.getPooled(hash, algorithm));
  }

  async getPooled(hash: string, algorithm: ChunkCheck = CHUNK_HASH, _options?: ReadOptions): Promise<Buffer> {
    try {
      return await decodeChunkFile(hash, await this.readFile(hash), algorithm);
    } catch (error) {
      // As in the local store: a damaged chunk is moved aside, so the next backup writes it anew.
      if (isBackyError(error, 'CHUNK_CORRUPT')) await this.quarantine(hash).catch(() => {});
      throw error;
    }
  }

  async equals(hash: string, expected: Buffer): Promise<boolean> {
    let chunk: ChunkFile;
    try {
      chunk = await this.readFile(hash);
    } catch (error) {
      if (isBackyError(error, 'CHUNK_CORRUPT')) return false;
      throw error;
    }
    return chunkFileEquals(chunk, expected);
  }

  private async readFile(hash: string): Promise<ChunkFile> {
    const key = this.chunkKey(hash);
    const file = await this.objects.get(key, `reading chunk ${hash}`, true);
    if (file == null) {
      if ((await this.objects.head(`${key}${DAMAGED_SUFFIX}`, `reading chunk ${hash}`)) != null) {
        throw new BackyError(
          'CHUNK_CORRUPT',
          `chunk ${hash} is damaged: an earlier read found it damaged and moved it aside to ${this.root}${key}${DAMAGED_SUFFIX}`,
        );
      }
      throw new BackyError('CHUNK_MISSING', `chunk ${hash} is missing from ${this.root}`);
    }
    return parseChunkFile(hash, file);
  }

  async quarantine(hash: string): Promise<boolean> {
    const key = this.chunkKey(hash);
    if ((await this.objects.head(key, `moving damaged chunk ${hash} aside`)) == null) return false;
    await this.objects.copy(key, `${key}${DAMAGED_SUFFIX}`, `moving damaged chunk ${hash} aside`);
    await this.objects.delete(key, `moving damaged chunk ${hash} aside`);
    return true;
  }

  async delete(hash: string): Promise<void> {
    await this.objects.delete(this.chunkKey(hash), `deleting chunk ${hash}`);
  }

  async *entries(): AsyncIterable<StoreEntry> {
    for await (const item of this.objects.list('chunks/', 'listing the chunks')) {
      const name = item.key.slice(item.key.lastIndexOf('/') + 1);
      if (HASH_RE.test(name)) yield { hash: name, path: item.key, bytes: item.bytes };
      else if (name.endsWith(DAMAGED_SUFFIX) && HASH_RE.test(name.slice(0, -DAMAGED_SUFFIX.length)))
        yield {
          hash: null,
          damagedOf: name.slice(0, -DAMAGED_SUFFIX.length),
          path: item.key,
          bytes: item.bytes,
        };
      // Anything else under chunks/ is not provably backy's: never yielded, so never deleted.
    }
  }

  async entryOf(hash: string): Promise<StoreEntry | null> {
    const key = this.chunkKey(hash);
    const info = await this.objects.head(key, `looking for chunk ${hash}`);
    return info == null ? null : { hash, path: key, bytes: info.bytes };
  }

  async removeEntry(entry: StoreEntry): Promise<void> {
    await this.objects.delete(entry.path, `deleting ${entry.path}`);
  }

  /** The store belongs to one archive: registering claims it (see S3Catalog.claim). */
  async register(id: string, _archiveDir: string): Promise<void> {
    await this.catalog.claim(id);
  }

  async unregisterEntry(_entry: string): Promise<void> {}

  /** No local archives: the catalog holds this store's revisions. */
  async registeredArchives(): Promise<RegistryEntry[]> {
    return [];
  }

  private async mapLimit<T, R>(items: T[], work: (item: T) => Promise<R>): Promise<R[]> {
    const out: R[] = new Array(items.length);
    let next = 0;
    const limit = Math.min(this.objects.options.concurrency, items.length);
    await Promise.all(
      Array.from({ length: limit }, async () => {
        while (next < items.length) {
          const i = next++;
          out[i] = await work(items[i]!);
        }
      }),
    );
    return out;
  }
}

/** The revisions of an S3 store: `revisions/<id>.map` and `revisions/<id>.rev`. */
class S3Catalog implements RevisionCatalog {
  constructor(private readonly objects: S3Objects) {}

  private key(id: string, kind: RevisionFileKind): string {
    return `revisions/${revisionFileName(id, kind)}`;
  }

  async list(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for await (const item of this.objects.list('revisions/', 'listing the revisions')) {
      const name = item.key.slice('revisions/'.length);
      const id = revisionIdOfRevFile(name);
      if (id != null && REVISION_ID_RE.test(id)) out.set(id, item.etag);
    }
    return out;
  }

  read(id: string, kind: RevisionFileKind): Promise<Buffer | null> {
    return this.objects.get(this.key(id, kind), `reading ${revisionFileName(id, kind)}`);
  }

  async write(id: string, kind: RevisionFileKind, data: Buffer): Promise<string> {
    return (await this.objects.put(this.key(id, kind), data, `writing ${revisionFileName(id, kind)}`)) ?? '';
  }

  async delete(id: string): Promise<void> {
    for (const kind of ['rev', 'map'] as const)
      await this.objects.delete(this.key(id, kind), `deleting ${revisionFileName(id, kind)}`);
  }

  lockWriter(): Promise<Lock> {
    return lockWriter(this.objects);
  }

  private async marker(): Promise<{ marker: Marker; etag: string } | null> {
    const info = await this.objects.head(MARKER, 'reading the store marker');
    if (info == null) return null;
    const bytes = await this.objects.get(MARKER, 'reading the store marker');
    if (bytes == null) return null;
    try {
      return { marker: JSON.parse(bytes.toString('utf8')) as Marker, etag: info.etag };
    } catch {
      throw new BackyError(
        'CONFIG_INVALID',
        `${this.objects.url}${MARKER}: not a backy store marker (not JSON)`,
      );
    }
  }

  async archiveId(): Promise<string | null> {
    // A GET, not a HEAD: its failure carries S3's error code (a wrong key is said as such).
    const bytes = await this.objects.get(MARKER, 'reading the store marker');
    if (bytes == null) return null;
    try {
      return (JSON.parse(bytes.toString('utf8')) as Marker).archive ?? null;
    } catch {
      throw new BackyError(
        'CONFIG_INVALID',
        `${this.objects.url}${MARKER}: not a backy store marker (not JSON)`,
      );
    }
  }

  async claim(archiveId: string): Promise<void> {
    const current = await this.marker();
    if (current?.marker.archive === archiveId) return;
    if (current?.marker.archive != null) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${this.objects.url} belongs to another archive (ID ${current.marker.archive}, this one is ${archiveId}); give each archive its own store.prefix`,
      );
    }
    const body = Buffer.from(JSON.stringify({ format: 1, archive: archiveId } satisfies Marker));
    const done = await this.objects.put(
      MARKER,
      body,
      'claiming the store',
      current == null ? { ifNoneMatch: '*' } : { ifMatch: current.etag },
    );
    if (done == null) return this.claim(archiveId); // changed meanwhile: look again
  }
}
