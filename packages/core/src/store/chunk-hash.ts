import { createHash } from 'node:crypto';
import type { HashAlgorithm as WorkerHashAlgorithm } from './chunk-worker-protocol.js';
import { chunkWorkers } from './chunk-workers.js';
import { blake } from './native.js';

/**
 * The hash that names chunks. New revisions use BLAKE3 (256 bits; measured on the 2-core reference
 * machine at ~7 GB/s per core against SHA-256's ~1.9 GB/s with SHA-NI, and as collision-resistant);
 * revisions made before it (map format 1) name their chunks by SHA-256 and stay readable. The chunk
 * workers compute them, so the set is theirs (chunk-worker-protocol.ts).
 */
export type HashAlgorithm = WorkerHashAlgorithm;
export const CHUNK_HASH: HashAlgorithm = 'blake3';

/**
 * What a store checks a chunk it reads against: the hash its name is by, or `sealed`: nothing, the
 * bytes as stored, for a layer above the store that checks them itself (an encrypted store checks the
 * authentication tag and the keyed hash of the content; see store/encryption.ts).
 */
export type ChunkCheck = HashAlgorithm | 'sealed';

/**
 * Hash of a chunk (BLAKE3 unless told), computed in the chunk worker pool (see chunk-workers.ts); `key`
 * is the key of a keyed hash (`keyed-blake3`).
 */
export function hashChunk(
  data: Uint8Array,
  algorithm: HashAlgorithm = CHUNK_HASH,
  key?: Uint8Array,
): Promise<string> {
  return chunkWorkers().digest(data, algorithm, key);
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Hex hash of `data` on the calling thread (for small or occasional inputs; chunks use `hashChunk`). */
export function chunkHashHex(data: Uint8Array, algorithm: HashAlgorithm = CHUNK_HASH): string {
  if (algorithm === 'sha256') return sha256Hex(data);
  if (algorithm !== 'blake3') throw new Error(`chunkHashHex: ${algorithm} is computed by hashChunk`);
  return blake().blake3(data).toString('hex');
}

/** Compared against in slices of this size (a chunk, usually); any size would do. */
const ZEROS = Buffer.alloc(4 * 1024 * 1024);

/** True if every byte is zero (memcmp against a static zero buffer): such a chunk gets no hash. */
export function isAllZero(data: Uint8Array): boolean {
  for (let offset = 0; offset < data.length; offset += ZEROS.length) {
    const part = data.subarray(offset, Math.min(data.length, offset + ZEROS.length));
    if (!Buffer.from(part.buffer, part.byteOffset, part.length).equals(ZEROS.subarray(0, part.length)))
      return false;
  }
  return true;
}
