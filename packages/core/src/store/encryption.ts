import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chunkBuffers } from '../buffer-pool.js';
import type { ChunkStore } from './contract.js';
import type { StoreKey } from './key-file.js';

/**
 * Client-side encryption (docs/storage.md, "Encryption"), the sealing of one object; the repository's
 * pipeline applies it to every object it stores (repository/sealing.ts). A sealed object is `BKE1`, a random 96-bit nonce, the AES-256-GCM ciphertext and
 * its 16-byte tag, with the object's role and name as associated data (so an object moved to another
 * name does not open). A chunk's plaintext is its chunk file (compressed before it is encrypted); its
 * name is the keyed BLAKE3 of its content, so the store cannot test for known content, and chunks are
 * deduplicated among the archives of one key only. A read opens the seal (a wrong tag is CHUNK_CORRUPT,
 * the object moved aside as any damaged chunk) and checks the content against its name.
 */
export const SEALED_MAGIC = Buffer.from('BKE1');
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const SEAL_OVERHEAD = SEALED_MAGIC.length + NONCE_BYTES + TAG_BYTES;
/** Encrypted in slices: node:crypto returns fresh buffers, and small ones are cheap (see chunk-workers.ts). */
const SLICE = 64 * 1024;
/** The key check object among the chunks (see repository/sealing.ts). */
const KEY_CHECK = 'key-check';
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
