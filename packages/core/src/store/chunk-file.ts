import { chunkBuffers } from '../buffer-pool.js';
import { BackyError, isBackyError } from '../errors.js';
import { CHUNK_FILE_HEADER_BYTES as HEADER_BYTES, CHUNK_FILE_MAGIC as MAGIC } from '../format/chunk-file.js';
import { CHUNK_HASH, type ChunkCheck, hashChunk } from './chunk-hash.js';
import { chunkWorkers } from './chunk-workers.js';
import { type Codec, codecById } from './codec.js';

/** Sample slices (bytes) probed before compressing a whole chunk; incompressible chunks are stored raw. */
const PROBE_SLICE = 16 * 1024;
const PROBE_RATIO = 0.9;
const KEEP_RAW_RATIO = 0.97;

export interface ChunkFile {
  /** The whole file (pooled when it fits a pool slot). */
  file: Buffer;
  codec: Codec;
  rawLength: number;
  payload: Buffer;
}

export const corruptChunk = (hash: string, why: string, cause?: unknown) =>
  new BackyError('CHUNK_CORRUPT', `chunk ${hash} is damaged: ${why}`, { cause });

/**
 * The chunk file's content in one pooled buffer (release it when written): the header, then the
 * payload, compressed by `codec` straight into the buffer or, for incompressible data, copied there raw.
 */
export async function encodeChunkFile(codec: Codec, data: Buffer): Promise<Buffer> {
  const file = chunkBuffers.acquire(HEADER_BYTES + data.length);
  MAGIC.copy(file);
  file.fill(0, 4, 8);
  file.writeUInt32LE(data.length, 8);
  const raw = () => {
    file.writeUInt8(0, 4);
    data.copy(file, HEADER_BYTES);
    return file;
  };
  if (codec.name === 'none') return raw();
  if (data.length > 4 * PROBE_SLICE) {
    const mid = Math.floor(data.length / 2);
    const probe = Buffer.concat([
      data.subarray(0, PROBE_SLICE),
      data.subarray(mid, mid + PROBE_SLICE),
      data.subarray(data.length - PROBE_SLICE),
    ]);
    if (codec.compressSync(probe).length > probe.length * PROBE_RATIO) return raw();
  }
  // Room for what is worth keeping: a chunk that compresses worse than KEEP_RAW_RATIO is stored raw.
  const room = file.subarray(HEADER_BYTES, HEADER_BYTES + Math.floor(data.length * KEEP_RAW_RATIO));
  const length = await codec.compressInto(data, room);
  if (length < 0) return raw();
  file.writeUInt8(codec.id, 4);
  return file.subarray(0, HEADER_BYTES + length);
}

/** Checks a chunk file's header (the file of chunk `hash`); the buffer is released when it is bad. */
export function parseChunkFile(hash: string, file: Buffer): ChunkFile {
  if (file.length < HEADER_BYTES || !file.subarray(0, 4).equals(MAGIC)) {
    chunkBuffers.release(file);
    throw corruptChunk(hash, 'bad header');
  }
  const codec = codecById(file.readUInt8(4));
  if (codec == null) {
    chunkBuffers.release(file);
    throw corruptChunk(hash, `unknown codec ${file.readUInt8(4)}`);
  }
  return { file, codec, rawLength: file.readUInt32LE(8), payload: file.subarray(HEADER_BYTES) };
}

/**
 * A chunk's content from its parsed file, verified against `hash` (by `check`, with `key` for a keyed
 * hash; `sealed`: not verified, for a layer above that verifies it, see `ChunkCheck`): decompressed into
 * a pooled buffer, or for a raw chunk handed on without a copy. After a `direct` read the raw payload
 * sits 12 bytes past an aligned address: it is copied once to an aligned buffer, so that it can be
 * written out directly again. The file's buffer is released (or handed on); release the result when done.
 */
export async function decodeChunkFile(
  hash: string,
  { file, codec, rawLength, payload }: ChunkFile,
  check: ChunkCheck,
  direct = false,
  key?: Uint8Array,
): Promise<Buffer> {
  if (codec.id === 0) {
    if (
      payload.length !== rawLength ||
      (check !== 'sealed' && (await hashChunk(payload, check, key)) !== hash)
    ) {
      chunkBuffers.release(file);
      throw corruptChunk(hash, 'content does not match its hash');
    }
    if (!direct) return payload;
    const out = chunkBuffers.acquire(rawLength);
    payload.copy(out);
    chunkBuffers.release(file);
    return out;
  }
  if (check === 'sealed') {
    // A sealed object is stored as it is (codec none): a compressed one is not one.
    chunkBuffers.release(file);
    throw corruptChunk(hash, 'not an encrypted chunk');
  }
  const out = chunkBuffers.acquire(rawLength);
  let result: { length: number; hash: string };
  try {
    result = await codec.decompressInto(payload, out, check, key);
  } catch (error) {
    chunkBuffers.release(out);
    // No zstd in this process says nothing about the chunk.
    if (isBackyError(error, 'NATIVE_MODULE_UNAVAILABLE')) throw error;
    throw corruptChunk(hash, 'cannot decompress', error);
  } finally {
    chunkBuffers.release(file);
  }
  if (result.length !== rawLength || result.hash !== hash) {
    chunkBuffers.release(out);
    throw corruptChunk(hash, 'content does not match its hash');
  }
  return out;
}

/**
 * True if the parsed chunk file holds exactly `expected`, compared byte for byte after decompression,
 * without hashing. This does not prove the file matches its name on its own: it is for checking a chunk
 * just written from bytes that hashed to its name against those bytes read again, where equal bytes
 * prove both. The file's buffer is released.
 */
export async function chunkFileEquals(
  { file, codec, rawLength, payload }: ChunkFile,
  expected: Buffer,
): Promise<boolean> {
  try {
    if (rawLength !== expected.length) return false;
    if (codec.id === 0 || codec.name === 'zstd')
      return await chunkWorkers().equals(payload, expected, codec.id === 0);
    const out = chunkBuffers.acquire(rawLength);
    try {
      const { length } = await codec.decompressInto(payload, out, CHUNK_HASH);
      return out.subarray(0, length).equals(expected);
    } finally {
      chunkBuffers.release(out);
    }
  } catch (error) {
    if (isBackyError(error, 'NATIVE_MODULE_UNAVAILABLE')) throw error;
    return false;
  } finally {
    chunkBuffers.release(file);
  }
}
