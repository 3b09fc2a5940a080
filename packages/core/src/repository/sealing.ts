import { chunkBuffers } from '../buffer-pool.js';
import { BackyError } from '../errors.js';
import type { Lock } from '../lock.js';
import { corruptChunk, parseChunkFile } from '../store/chunk-file.js';
import { hashChunk } from '../store/chunk-hash.js';
import type { ChunkNaming, Fence, RevisionCatalog, RevisionFileKind } from '../store/contract.js';
import { KEYED_HASH, seal, unseal } from '../store/encryption.js';
import type { StoreKey } from '../store/key-file.js';

/**
 * The encryption step of the repository's pipeline (docs/storage.md, "Encryption"): a chunk file
 * (compressed) is sealed with AES-256-GCM (store/encryption.ts) under the chunk's keyed name, and the
 * sealed object is what the backend stores, in the frame every encrypted store has held so far: a chunk
 * file header of codec none around it. Keeping that frame keeps the bytes of an encrypted store as they
 * were, so stores written before and after read alike, by this version and the ones before it.
 *
 * The key check object (`ke/key-check` among the chunks: no hash, so never listed or purged) records
 * which key the store is written with: a wrong key file is refused at once with both key IDs, before any
 * chunk is read (which would otherwise look damaged and be moved aside) or written under wrong names.
 */
export const KEY_CHECK = 'key-check';
const KEY_CHECK_MAGIC = Buffer.from('BKK1');
const KEY_CHECK_TEXT = Buffer.from('backy key check');
const FRAME_BYTES = 12;

/** What the sealing step needs of the repository: the key check object, and whether the store holds data. */
export interface SealedStore {
  readonly root: string;
  /** The key check object's bytes (unframed), or null when there is none. */
  readKeyCheck(): Promise<Buffer | null>;
  writeKeyCheck(object: Buffer): Promise<void>;
  holdsData(): Promise<boolean>;
}

export class Sealing {
  readonly naming: ChunkNaming;
  private checked: Promise<boolean> | null = null;
  private claimed: Promise<void> | null = null;

  constructor(
    readonly key: StoreKey,
    private readonly store: SealedStore,
  ) {
    this.naming = { algorithm: KEYED_HASH, name: (data) => hashChunk(data, KEYED_HASH, key.nameKey) };
  }

  /**
   * The object to store for chunk file `file` of chunk `hash`: framed and sealed, in one pooled buffer
   * whose start is where `file`'s was (aligned, for O_DIRECT writes). `file` is released.
   */
  sealChunk(hash: string, file: Buffer): Buffer {
    let framed: Buffer | null = null;
    try {
      const sealed = seal(this.key, file, `chunk ${hash}`, (length) => {
        framed = chunkBuffers.acquire(FRAME_BYTES + length);
        return framed.subarray(FRAME_BYTES);
      });
      const out = framed! as Buffer;
      out.write('BKC1', 0, 'latin1');
      out.fill(0, 4, 8);
      out.writeUInt32LE(sealed.length, 8);
      return out;
    } finally {
      chunkBuffers.release(file);
    }
  }

  /**
   * The chunk file inside the stored object `stored` of chunk `hash` (pooled; `stored` is released):
   * CHUNK_CORRUPT when the frame is wrong or the seal does not open.
   */
  openChunk(hash: string, stored: Buffer): Buffer {
    const { file, codec, rawLength, payload } = parseChunkFile(hash, stored);
    if (codec.id !== 0 || payload.length !== rawLength) {
      chunkBuffers.release(file);
      throw corruptChunk(hash, codec.id !== 0 ? 'not an encrypted chunk' : 'content does not match its hash');
    }
    const opened = unseal(this.key, payload, `chunk ${hash}`, (length) => chunkBuffers.acquire(length));
    chunkBuffers.release(file);
    if (opened == null) throw corruptChunk(hash, 'it does not decrypt: the stored object was altered');
    return opened;
  }

  /** Checks (once) that the store is written with this key: true if it is, false if it has no key yet. */
  check(): Promise<boolean> {
    this.checked ??= this.checkKey();
    return this.checked;
  }

  /** Makes sure the store records this key, recording it in a store that has none yet. */
  claim(): Promise<void> {
    this.claimed ??= (async () => {
      if (await this.check()) return;
      const id = Buffer.from(this.key.id, 'hex');
      await this.store.writeKeyCheck(
        Buffer.concat([KEY_CHECK_MAGIC, id, seal(this.key, KEY_CHECK_TEXT, KEY_CHECK)]),
      );
      // Another host may have recorded its key meanwhile: the stored check decides.
      this.checked = this.checkKey();
      if (!(await this.checked))
        throw new Error(`${this.store.root}: the key check just written is not there`);
    })();
    this.claimed.catch(() => {
      this.claimed = null;
    });
    return this.claimed;
  }

  private async checkKey(): Promise<boolean> {
    const stored = await this.store.readKeyCheck();
    if (stored == null) {
      if (!(await this.store.holdsData())) return false;
      throw new BackyError(
        'CONFIG_INVALID',
        `${this.store.root} holds chunks or revisions but no key check object: it was not written with encryption, so the key ${this.key.file} cannot read it`,
      );
    }
    const storedId = stored.subarray(KEY_CHECK_MAGIC.length, KEY_CHECK_MAGIC.length + 8).toString('hex');
    if (stored.subarray(0, KEY_CHECK_MAGIC.length).equals(KEY_CHECK_MAGIC) && storedId !== this.key.id) {
      throw new BackyError(
        'CONFIG_INVALID',
        `wrong key: ${this.store.root} is encrypted with key ${storedId}, the key file ${this.key.file} holds key ${this.key.id}`,
      );
    }
    const text = unseal(this.key, stored.subarray(KEY_CHECK_MAGIC.length + 8), KEY_CHECK);
    if (text == null || !text.equals(KEY_CHECK_TEXT)) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${this.store.root}: the key check object does not decrypt with the key ${this.key.file} (key ${this.key.id}): a wrong key, or the object was altered`,
      );
    }
    return true;
  }
}

/** A store's revision files, sealed (the archive directory's copies are plaintext). */
export class SealedCatalog implements RevisionCatalog {
  constructor(
    private readonly inner: RevisionCatalog,
    private readonly sealing: Sealing,
    private readonly root: string,
  ) {}

  async list(): Promise<Map<string, string>> {
    await this.sealing.check();
    return this.inner.list();
  }

  async read(id: string, kind: RevisionFileKind): Promise<Buffer | null> {
    await this.sealing.check();
    const sealed = await this.inner.read(id, kind);
    if (sealed == null) return null;
    const plain = unseal(this.sealing.key, sealed, `${kind} ${id}`);
    if (plain == null) {
      throw new BackyError(
        'REVISION_INVALID',
        `${id}.${kind} in ${this.root} does not decrypt: the stored object was altered`,
      );
    }
    return plain;
  }

  async write(
    id: string,
    kind: RevisionFileKind,
    data: Buffer,
    options: { retainUntil?: number } = {},
  ): Promise<string> {
    await this.sealing.claim();
    return this.inner.write(id, kind, seal(this.sealing.key, data, `${kind} ${id}`), options);
  }

  delete(id: string): Promise<void> {
    return this.inner.delete(id);
  }

  // Sealing changes what a revision file holds, not its name: its retention is the inner catalog's.
  async retainedUntil(id: string, kind: RevisionFileKind): Promise<number | null | undefined> {
    if (this.inner.retainedUntil == null) throw this.cannotRetain();
    return this.inner.retainedUntil(id, kind);
  }

  async retain(id: string, kind: RevisionFileKind, until: number): Promise<number | null> {
    if (this.inner.retain == null) throw this.cannotRetain();
    return this.inner.retain(id, kind, until);
  }

  private cannotRetain(): BackyError {
    return new BackyError('STORE_INVALID', `${this.root}: the store cannot retain objects (Object Lock)`);
  }

  lockWriter(options?: { fence?: number }): Promise<Lock> {
    return this.inner.lockWriter(options);
  }

  archiveId(): Promise<string | null> {
    return this.inner.archiveId();
  }

  claim(archiveId: string): Promise<void> {
    return this.inner.claim(archiveId);
  }

  // Not sealed: a token and a server name, which the leases beside it show in plain text too.
  fence(): Promise<Fence | null> {
    return this.inner.fence();
  }

  raiseFence(token: number, server: string): Promise<Fence | null> {
    return this.inner.raiseFence(token, server);
  }
}
