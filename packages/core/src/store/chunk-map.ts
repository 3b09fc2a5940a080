import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { BackyError } from '../errors.js';
import { writeFileAtomic } from '../fs-util.js';
import { SEALED_FILE_MODE } from '../private-modes.js';
import { CHUNK_HASH, type HashAlgorithm } from './chunk-hash.js';

export const HASH_BYTES = 32;
/** Chunks are fixed-size slices of the image by offset. */
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

/** Map file magic per algorithm: the format version says which hash names the chunks. */
const MAGICS: Record<HashAlgorithm, Buffer> = {
  sha256: Buffer.from('BKYMAP01'),
  blake3: Buffer.from('BKYMAP02'),
  /** An encrypted store's (store/encryption.ts): the names need the store's key. */
  'keyed-blake3': Buffer.from('BKYMAP03'),
};
const HEADER_BYTES = 32;
const ZERO_HASH = Buffer.alloc(HASH_BYTES);

/**
 * The chunk map of one revision: the image size and, per chunk index, the hash of its content (see
 * `HashAlgorithm`) or "zero". On disk: a 32-byte header (magic, size, chunk size, count), 32 bytes per
 * chunk (all zero bytes for a zero chunk), and a SHA-256 of everything before it, so a torn or damaged
 * map is detected.
 */
export class ChunkMap {
  size: number;
  readonly chunkSize: number;
  private hashes: Buffer;
  /**
   * The checksum (hex) the map file ends with, as loaded or last saved: what a revision's `.rev`
   * records to bind its map (`map_checksum`). Null for a map never saved or loaded.
   */
  checksum: string | null = null;

  constructor(
    size: number,
    chunkSize = DEFAULT_CHUNK_SIZE,
    hashes?: Buffer,
    /** The hash that names this map's chunks. */
    readonly algorithm: HashAlgorithm = CHUNK_HASH,
  ) {
    this.size = size;
    this.chunkSize = chunkSize;
    const count = chunkCountFor(size, chunkSize);
    this.hashes = Buffer.alloc(count * HASH_BYTES);
    hashes?.copy(this.hashes, 0, 0, Math.min(hashes.length, this.hashes.length));
  }

  get chunkCount(): number {
    return this.hashes.length / HASH_BYTES;
  }

  /** Length of the chunk at `index` (the last one may be short). */
  chunkLength(index: number): number {
    return Math.min(this.chunkSize, this.size - index * this.chunkSize);
  }

  /** Hex hash of the chunk (by `algorithm`), or null for a zero chunk. */
  get(index: number): string | null {
    this.check(index);
    const entry = this.hashes.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES);
    return entry.equals(ZERO_HASH) ? null : entry.toString('hex');
  }

  set(index: number, hash: string | null): void {
    this.check(index);
    if (hash == null) this.hashes.fill(0, index * HASH_BYTES, (index + 1) * HASH_BYTES);
    else this.hashes.write(hash, index * HASH_BYTES, HASH_BYTES, 'hex');
  }

  isZero(index: number): boolean {
    return this.get(index) == null;
  }

  /** Changes the size; new chunks are zero, chunks past the end are dropped. */
  resize(size: number): void {
    const next = Buffer.alloc(chunkCountFor(size, this.chunkSize) * HASH_BYTES);
    this.hashes.copy(next, 0, 0, Math.min(next.length, this.hashes.length));
    this.hashes = next;
    this.size = size;
  }

  clone(): ChunkMap {
    return new ChunkMap(this.size, this.chunkSize, this.hashes, this.algorithm);
  }

  /** Distinct non-zero hashes. */
  *uniqueHashes(): Iterable<string> {
    const seen = new Set<string>();
    for (let i = 0; i < this.chunkCount; i++) {
      const h = this.get(i);
      if (h != null && !seen.has(h)) {
        seen.add(h);
        yield h;
      }
    }
  }

  /** Bytes of the image in non-zero chunks: what the revision holds in the store before dedup. */
  dataBytes(): number {
    let bytes = 0;
    for (let i = 0; i < this.chunkCount; i++)
      if (!this.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES).equals(ZERO_HASH))
        bytes += this.chunkLength(i);
    return bytes;
  }

  serialize(): Buffer {
    const header = Buffer.alloc(HEADER_BYTES);
    MAGICS[this.algorithm].copy(header, 0);
    header.writeBigUInt64LE(BigInt(this.size), 8);
    header.writeUInt32LE(this.chunkSize, 16);
    header.writeUInt32LE(this.chunkCount, 20);
    const body = Buffer.concat([header, this.hashes]);
    return Buffer.concat([body, createHash('sha256').update(body).digest()]);
  }

  static deserialize(data: Buffer, what = 'chunk map'): ChunkMap {
    const fail = (why: string) => new BackyError('REVISION_INVALID', `${what}: ${why}`);
    const magic = data.subarray(0, 8);
    const algorithm = (Object.keys(MAGICS) as HashAlgorithm[]).find((a) => MAGICS[a].equals(magic));
    if (data.length < HEADER_BYTES + HASH_BYTES || algorithm == null) throw fail('not a backy chunk map');
    const body = data.subarray(0, data.length - HASH_BYTES);
    if (
      !createHash('sha256')
        .update(body)
        .digest()
        .equals(data.subarray(data.length - HASH_BYTES))
    ) {
      throw fail('checksum mismatch (the map is damaged)');
    }
    const size = Number(data.readBigUInt64LE(8));
    const chunkSize = data.readUInt32LE(16);
    const count = data.readUInt32LE(20);
    if (
      chunkSize === 0 ||
      count !== chunkCountFor(size, chunkSize) ||
      body.length !== HEADER_BYTES + count * HASH_BYTES
    ) {
      throw fail('inconsistent header');
    }
    const map = new ChunkMap(size, chunkSize, body.subarray(HEADER_BYTES), algorithm);
    map.checksum = data.subarray(data.length - HASH_BYTES).toString('hex');
    return map;
  }

  static async load(path: string): Promise<ChunkMap> {
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (error) {
      throw new BackyError(
        'REVISION_INVALID',
        `chunk map ${path} cannot be read: ${(error as Error).message}`,
        { cause: error },
      );
    }
    return ChunkMap.deserialize(data, path);
  }

  async save(path: string): Promise<void> {
    const data = this.serialize();
    await writeFileAtomic(path, data, { mode: SEALED_FILE_MODE });
    this.checksum = data.subarray(data.length - HASH_BYTES).toString('hex');
  }

  private check(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.chunkCount) {
      throw new RangeError(`chunk index ${index} out of range 0..${this.chunkCount - 1}`);
    }
  }
}

export function chunkCountFor(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}
