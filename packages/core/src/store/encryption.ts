import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { BackyError, isBackyError } from '../errors.js';
import type { Lock, LockMode } from '../lock.js';
import type { RegistryEntry } from './archive-registry.js';
import { chunkBuffers } from './buffer-pool.js';
import {
  chunkFileEquals,
  corruptChunk,
  decodeChunkFile,
  encodeChunkFile,
  parseChunkFile,
} from './chunk-file.js';
import { CHUNK_HASH, type ChunkCheck, hashChunk } from './chunk-hash.js';
import type { Codec } from './codec.js';
import type {
  ChunkNaming,
  ChunkStore,
  PutResult,
  ReadOptions,
  RevisionCatalog,
  RevisionFileKind,
  StoreEntry,
} from './contract.js';
import type { StoreKey } from './key-file.js';
import { PutOnce, unpooled } from './put-once.js';

/**
 * Client-side encryption as a layer over any store (docs/storage.md, "Encryption"). Every object it
 * puts into the store below is sealed: `BKE1`, a random 96-bit nonce, the AES-256-GCM ciphertext and
 * its 16-byte tag, with the object's role and name as associated data (so an object moved to another
 * name does not open). A chunk's plaintext is its chunk file (compressed before it is encrypted); its
 * name is the keyed BLAKE3 of its content, so the store cannot test for known content, and chunks are
 * deduplicated among the archives of one key only. A read opens the seal (a wrong tag is CHUNK_CORRUPT,
 * the object moved aside as any damaged chunk) and checks the content against its name. The store below
 * keeps the sealed objects as they are (codec none) and is read with `sealed`, unchecked: the check is
 * the layer's.
 *
 * A key check object (`key-check`, not a hash, so never listed or purged) records which key the store
 * is written with: a wrong key file is refused at once with both key IDs, before any chunk is read
 * (which would otherwise look damaged and be moved aside) or written under names of the wrong key.
 */
export const SEALED_MAGIC = Buffer.from('BKE1');
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const SEAL_OVERHEAD = SEALED_MAGIC.length + NONCE_BYTES + TAG_BYTES;
/** Encrypted in slices: node:crypto returns fresh buffers, and small ones are cheap (see chunk-workers.ts). */
const SLICE = 64 * 1024;
const KEY_CHECK = 'key-check';
const KEY_CHECK_MAGIC = Buffer.from('BKK1');
const KEY_CHECK_TEXT = Buffer.from('backy key check');
export const KEYED_HASH = 'keyed-blake3';

/**
 * Whether a store records that it is encrypted (it holds the key check object). The store's record
 * decides, not an archive's config: a config whose `store.encryption` was removed must not write
 * plaintext into an encrypted store. Only looked up, never read: a read that found the object damaged
 * would move it aside, and the record with it.
 */
export function isEncryptedStore(store: ChunkStore): Promise<boolean> {
  return store.has(KEY_CHECK);
}

/** True if `data` is an object this layer sealed (a remote store's revision file read without the key). */
export function isSealed(data: Buffer): boolean {
  return data.length >= SEAL_OVERHEAD && data.subarray(0, SEALED_MAGIC.length).equals(SEALED_MAGIC);
}

const aad = (context: string) => Buffer.concat([SEALED_MAGIC, Buffer.from(` backy ${context}`)]);

type Alloc = (length: number) => Buffer;
const plainAlloc: Alloc = (length) => Buffer.allocUnsafe(length);

/** Seals `data` into a buffer from `alloc` (a pooled one for chunks). */
export function seal(key: StoreKey, data: Buffer, context: string, alloc = plainAlloc): Buffer {
  const out = alloc(data.length + SEAL_OVERHEAD);
  const nonce = randomBytes(NONCE_BYTES);
  SEALED_MAGIC.copy(out);
  nonce.copy(out, SEALED_MAGIC.length);
  const cipher = createCipheriv('aes-256-gcm', key.dataKey, nonce);
  cipher.setAAD(aad(context));
  let at = SEALED_MAGIC.length + NONCE_BYTES;
  for (let i = 0; i < data.length; i += SLICE) at += cipher.update(data.subarray(i, i + SLICE)).copy(out, at);
  at += cipher.final().copy(out, at);
  cipher.getAuthTag().copy(out, at);
  return out;
}

/** The plaintext of a sealed object in a buffer from `alloc`, or null when it does not open. */
export function unseal(key: StoreKey, data: Buffer, context: string, alloc = plainAlloc): Buffer | null {
  if (!isSealed(data)) return null;
  const body = data.subarray(SEALED_MAGIC.length + NONCE_BYTES, data.length - TAG_BYTES);
  const nonce = data.subarray(SEALED_MAGIC.length, SEALED_MAGIC.length + NONCE_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key.dataKey, nonce);
  decipher.setAAD(aad(context));
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  const out = alloc(body.length);
  let at = 0;
  try {
    for (let i = 0; i < body.length; i += SLICE)
      at += decipher.update(body.subarray(i, i + SLICE)).copy(out, at);
    decipher.final();
  } catch {
    chunkBuffers.release(out);
    return null;
  }
  return out;
}

const pooled: Alloc = (length) => chunkBuffers.acquire(length);

/** A store whose objects are sealed with `key` (see above); `inner` keeps them (with codec none). */
export class EncryptedChunkStore implements ChunkStore {
  readonly catalog: RevisionCatalog | null;
  readonly naming: ChunkNaming;
  private readonly puts = new PutOnce();
  private checked: Promise<boolean> | null = null;
  private claimed: Promise<void> | null = null;

  constructor(
    readonly inner: ChunkStore,
    private readonly key: StoreKey,
    /** Compresses chunks before they are sealed. */
    readonly codec: Codec,
  ) {
    this.catalog =
      inner.catalog == null
        ? null
        : new EncryptedCatalog(inner.catalog, key, inner.root, {
            check: async () => void (await this.check()),
            claim: () => this.claim(),
          });
    this.naming = { algorithm: KEYED_HASH, name: (data) => hashChunk(data, KEYED_HASH, key.nameKey) };
  }

  get root(): string {
    return this.inner.root;
  }

  async init(): Promise<void> {
    await this.inner.init();
    await this.claim();
  }

  exists(): Promise<boolean> {
    return this.inner.exists();
  }

  lock(mode: LockMode, waitSeconds?: number): Promise<Lock> {
    return this.inner.lock(mode, waitSeconds);
  }

  async has(hash: string): Promise<boolean> {
    await this.check();
    return this.inner.has(hash);
  }

  async missing(hashes: Iterable<string>): Promise<string[]> {
    await this.check();
    return this.inner.missing(hashes);
  }

  put(hash: string, data: Buffer, options: { rewrite?: boolean } = {}): Promise<PutResult> {
    return this.puts.put(hash, () => this.putNew(hash, data, options.rewrite ?? false));
  }

  private async putNew(hash: string, data: Buffer, rewrite: boolean): Promise<PutResult> {
    await this.claim();
    if (!rewrite && (await this.inner.has(hash))) return { written: 0 };
    const file = await encodeChunkFile(this.codec, data);
    let sealed: Buffer;
    try {
      sealed = seal(this.key, file, `chunk ${hash}`, pooled);
    } finally {
      chunkBuffers.release(file);
    }
    try {
      // Looked for above: the store below need not look again.
      return await this.inner.put(hash, sealed, { rewrite: true });
    } finally {
      chunkBuffers.release(sealed);
    }
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  async get(hash: string, algorithm: ChunkCheck = CHUNK_HASH): Promise<Buffer> {
    return unpooled(await this.getPooled(hash, algorithm));
  }

  async getPooled(
    hash: string,
    algorithm: ChunkCheck = CHUNK_HASH,
    options: ReadOptions = {},
  ): Promise<Buffer> {
    await this.check();
    const direct = options.bypassCache ?? false;
    const sealed = await this.inner.getPooled(hash, 'sealed', options);
    try {
      const file = unseal(this.key, sealed, `chunk ${hash}`, pooled);
      chunkBuffers.release(sealed);
      if (file == null) throw corruptChunk(hash, 'it does not decrypt: the stored object was altered');
      const key = algorithm === KEYED_HASH ? this.key.nameKey : undefined;
      return await decodeChunkFile(hash, parseChunkFile(hash, file), algorithm, direct, key);
    } catch (error) {
      if (isBackyError(error, 'CHUNK_CORRUPT')) await this.inner.quarantine(hash).catch(() => {});
      throw error;
    }
  }

  async equals(hash: string, expected: Buffer): Promise<boolean> {
    await this.check();
    let sealed: Buffer;
    try {
      sealed = await this.inner.getPooled(hash, 'sealed', { bypassCache: true });
    } catch (error) {
      if (isBackyError(error, 'CHUNK_CORRUPT')) return false;
      throw error;
    }
    const file = unseal(this.key, sealed, `chunk ${hash}`, pooled);
    chunkBuffers.release(sealed);
    if (file == null) return false;
    try {
      return await chunkFileEquals(parseChunkFile(hash, file), expected);
    } catch {
      return false;
    }
  }

  quarantine(hash: string): Promise<boolean> {
    return this.inner.quarantine(hash);
  }

  delete(hash: string): Promise<void> {
    return this.inner.delete(hash);
  }

  entries(): AsyncIterable<StoreEntry> {
    return this.inner.entries();
  }

  entryOf(hash: string): Promise<StoreEntry | null> {
    return this.inner.entryOf(hash);
  }

  removeEntry(entry: StoreEntry): Promise<void> {
    return this.inner.removeEntry(entry);
  }

  register(id: string, archiveDir: string): Promise<void> {
    return this.inner.register(id, archiveDir);
  }

  unregisterEntry(entry: string): Promise<void> {
    return this.inner.unregisterEntry(entry);
  }

  registeredArchives(): Promise<RegistryEntry[]> {
    return this.inner.registeredArchives();
  }

  /** Checks (once) that the store is written with this key: true if it is, false if it has no key yet. */
  private check(): Promise<boolean> {
    this.checked ??= this.checkKey();
    return this.checked;
  }

  /** Makes sure the store records this key, recording it in a store that has none yet. */
  private claim(): Promise<void> {
    this.claimed ??= (async () => {
      if (await this.check()) return;
      const id = Buffer.from(this.key.id, 'hex');
      const object = Buffer.concat([KEY_CHECK_MAGIC, id, seal(this.key, KEY_CHECK_TEXT, KEY_CHECK)]);
      await this.inner.put(KEY_CHECK, object);
      // Another host may have recorded its key meanwhile: the stored check decides.
      this.checked = this.checkKey();
      if (!(await this.checked)) throw new Error(`${this.root}: the key check just written is not there`);
    })();
    this.claimed.catch(() => {
      this.claimed = null;
    });
    return this.claimed;
  }

  private async checkKey(): Promise<boolean> {
    let stored: Buffer;
    try {
      stored = await this.inner.get(KEY_CHECK, 'sealed');
    } catch (error) {
      if (!isBackyError(error, 'CHUNK_MISSING')) throw error;
      if (!(await this.holdsData())) return false;
      throw new BackyError(
        'CONFIG_INVALID',
        `${this.root} holds chunks or revisions but no key check object: it was not written with encryption, so the key ${this.key.file} cannot read it`,
      );
    }
    const storedId = stored.subarray(KEY_CHECK_MAGIC.length, KEY_CHECK_MAGIC.length + 8).toString('hex');
    if (stored.subarray(0, KEY_CHECK_MAGIC.length).equals(KEY_CHECK_MAGIC) && storedId !== this.key.id) {
      throw new BackyError(
        'CONFIG_INVALID',
        `wrong key: ${this.root} is encrypted with key ${storedId}, the key file ${this.key.file} holds key ${this.key.id}`,
      );
    }
    const text = unseal(this.key, stored.subarray(KEY_CHECK_MAGIC.length + 8), KEY_CHECK);
    if (text == null || !text.equals(KEY_CHECK_TEXT)) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${this.root}: the key check object does not decrypt with the key ${this.key.file} (key ${this.key.id}): a wrong key, or the object was altered`,
      );
    }
    return true;
  }

  /** Whether the store holds any chunk or revision (then a missing key check is no new store). */
  private async holdsData(): Promise<boolean> {
    for await (const _ of this.inner.entries()) return true;
    return ((await this.inner.catalog?.list())?.size ?? 0) > 0;
  }
}

/** A remote store's revision files, sealed (the archive directory's copies are plaintext). */
class EncryptedCatalog implements RevisionCatalog {
  constructor(
    private readonly inner: RevisionCatalog,
    private readonly key: StoreKey,
    private readonly root: string,
    /** Checks the key before reading; records it in a new store before writing. */
    private readonly key$: { check(): Promise<void>; claim(): Promise<void> },
  ) {}

  async list(): Promise<Map<string, string>> {
    await this.key$.check();
    return this.inner.list();
  }

  async read(id: string, kind: RevisionFileKind): Promise<Buffer | null> {
    await this.key$.check();
    const sealed = await this.inner.read(id, kind);
    if (sealed == null) return null;
    const plain = unseal(this.key, sealed, `${kind} ${id}`);
    if (plain == null) {
      throw new BackyError(
        'REVISION_INVALID',
        `${id}.${kind} in ${this.root} does not decrypt: the stored object was altered`,
      );
    }
    return plain;
  }

  async write(id: string, kind: RevisionFileKind, data: Buffer): Promise<string> {
    await this.key$.claim();
    return this.inner.write(id, kind, seal(this.key, data, `${kind} ${id}`));
  }

  delete(id: string): Promise<void> {
    return this.inner.delete(id);
  }

  lockWriter(): Promise<Lock> {
    return this.inner.lockWriter();
  }

  archiveId(): Promise<string | null> {
    return this.inner.archiveId();
  }

  claim(archiveId: string): Promise<void> {
    return this.inner.claim(archiveId);
  }
}
