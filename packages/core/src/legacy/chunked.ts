// Revisions of backy 2.2–2.5's "chunked" backend, read in place: `<id>` is JSON
// `{"mapping": {"<chunk index>": "<hash>"}, "size": N}`, chunks are 4 MiB, a chunk not in the mapping
// is zeros, and each chunk is `chunks/<hash[0:2]>/<hash>.chunk.lzo` (store v2, marker `chunks/store`
// = `v2`) or `chunks/<hash[0:2]>/<hash[2:4]>/<hash>.chunk.lzo` (v1): python-lzo data whose MurmurHash3
// (x64, 128 bit, as hex) is the hash. Every read is checked against it.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackyError, ioError } from '../errors.js';
import type { RevisionReader } from '../revision-io.js';
import { lzoDecompressWithHeader } from './lzo.js';
import { mmh3Hex } from './mmh3.js';

export const LEGACY_CHUNK_SIZE = 4 * 1024 * 1024;
const HASH = /^[0-9a-f]{32}$/;

export interface LegacyChunkedMap {
  size: number;
  /** Chunk index → hash. */
  mapping: Map<number, string>;
}

/** Reads and checks a 2.2–2.5 revision's mapping file `<id>`. */
export async function readLegacyMapping(path: string): Promise<LegacyChunkedMap> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code != null)
      throw ioError(error, `reading backy 2.x mapping ${path}`);
    throw new BackyError('REVISION_INVALID', `${path}: not a backy 2.x chunk mapping (not JSON)`);
  }
  const bad = (why: string) =>
    new BackyError('REVISION_INVALID', `${path}: not a backy 2.x chunk mapping (${why})`);
  if (raw == null || typeof raw !== 'object') throw bad('not an object');
  const { size, mapping } = raw as { size?: unknown; mapping?: unknown };
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad('no valid "size"');
  if (mapping == null || typeof mapping !== 'object') throw bad('no "mapping"');
  const count = Math.ceil(size / LEGACY_CHUNK_SIZE);
  const out = new Map<number, string>();
  for (const [key, hash] of Object.entries(mapping as Record<string, unknown>)) {
    const index = Number(key);
    if (!Number.isInteger(index) || index < 0 || index >= count)
      throw bad(`chunk index ${JSON.stringify(key)}`);
    if (typeof hash !== 'string' || !HASH.test(hash)) throw bad(`hash of chunk ${index}`);
    out.set(index, hash);
  }
  return { size, mapping: out };
}

/** The chunk file of `hash` in a backy 2.x store, v2 layout first, then v1. */
export async function readLegacyChunkFile(chunksDir: string, hash: string): Promise<Buffer> {
  const paths = [
    join(chunksDir, hash.slice(0, 2), `${hash}.chunk.lzo`),
    join(chunksDir, hash.slice(0, 2), hash.slice(2, 4), `${hash}.chunk.lzo`),
  ];
  for (const path of paths) {
    try {
      return await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(error, `reading chunk ${path}`);
    }
  }
  throw new BackyError('CHUNK_MISSING', `backy 2.x chunk ${hash} is missing from ${chunksDir}`);
}

/** A backy 2.2–2.5 revision, read through the same seam as every other. */
export class LegacyChunkedReader implements RevisionReader {
  readonly chunkSize = LEGACY_CHUNK_SIZE;
  readonly hashAlgorithm = 'mmh3' as const;

  constructor(
    private readonly chunksDir: string,
    private readonly map: LegacyChunkedMap,
  ) {}

  get size(): number {
    return this.map.size;
  }

  get chunkCount(): number {
    return Math.ceil(this.map.size / LEGACY_CHUNK_SIZE);
  }

  chunkLength(index: number): number {
    if (index < 0 || index >= this.chunkCount) throw new RangeError(`chunk ${index} out of range`);
    return Math.min(LEGACY_CHUNK_SIZE, this.map.size - index * LEGACY_CHUNK_SIZE);
  }

  isZero(index: number): boolean {
    return !this.map.mapping.has(index);
  }

  chunkHash(index: number): string | null {
    return this.map.mapping.get(index) ?? null;
  }

  async read(index: number): Promise<Buffer> {
    const length = this.chunkLength(index);
    const hash = this.map.mapping.get(index);
    if (hash == null) return Buffer.alloc(length);
    const data = lzoDecompressWithHeader(await readLegacyChunkFile(this.chunksDir, hash));
    if (mmh3Hex(data) !== hash) {
      throw new BackyError(
        'CHUNK_CORRUPT',
        `backy 2.x chunk ${hash} is damaged: content does not match its hash`,
      );
    }
    // 2.x stored whole 4 MiB chunks; the image ends at `size`.
    if (data.length < length) return Buffer.concat([data, Buffer.alloc(length - data.length)]);
    return data.length === length ? data : data.subarray(0, length);
  }

  async close(): Promise<void> {}
}
