import { promisify } from 'node:util';
import { deflateRaw, deflateRawSync, inflateRaw } from 'node:zlib';
import { type HashAlgorithm, hashChunk } from './chunk-hash.js';
import { chunkWorkers } from './chunk-workers.js';
import { zstd } from './native.js';

const deflateAsync = promisify(deflateRaw);
const inflateAsync = promisify(inflateRaw);

/**
 * Compression codecs for chunks. zstd level 1 is the default: measured on the 2-core reference machine
 * (`pnpm bench:codecs`) on VM-like log text it compresses about as fast as lz4 (~300 MB/s per core) to a
 * third smaller output (ratio 0.28 against lz4's 0.43) and decompresses at ~1.2 GB/s.
 * lz4-napi was dropped: its buffers are never returned to the OS (RSS grew past 700 MB in 300 calls).
 * zstd comes from native-modules.js: Node's own where it has one (22.15+), else @toondepauw/node-zstd
 * for compression and zstd compiled to WebAssembly (zstd-wasm.js) for decompression. Against zstd-napi,
 * used before (`pnpm bench:codecs`, the machine shared, so ratios matter more than MB/s): Node 24's zstd
 * compresses at 1.06× and decompresses at 1.01× its speed; the addon compresses at 0.90-1.04× and
 * decompresses at 0.36-0.51× (it grows its output as it goes), which is why it only compresses: the
 * WebAssembly decoder, one context into reused memory, ran at 3× the addon's speed on 4 MiB text chunks
 * (437 against 148 MB/s), and compresses at only 0.67× (114 against 171 MB/s), so it only decompresses.
 * Peak RSS is constant in the image size (`pnpm bench:memory`): the addon's buffers are freed by
 * finalizers that the chunk workers give a turn of the event loop after every task (chunk-worker.js).
 * deflate (zlib, level 1) needs no native module; `none` stores chunks as they are.
 */
export const CODECS = ['zstd', 'deflate', 'none'] as const;
export type CodecName = (typeof CODECS)[number];

/** On-disk codec ids (1 was lz4 in early development builds); 0 is also used for chunks that did not compress. */
export const CODEC_IDS = { none: 0, deflate: 2, zstd: 3 } as const satisfies Record<CodecName, number>;

export interface Codec {
  readonly name: CodecName;
  readonly id: number;
  /**
   * Compresses `data` into `out` (a pooled chunk buffer) and returns the compressed length, or -1 when
   * the result would not fit (the chunk is then stored raw).
   */
  compressInto(data: Buffer, out: Buffer): Promise<number>;
  /**
   * Decompresses a chunk payload into `out` (a pooled chunk buffer); returns the length and its hash
   * (`key`: the key of a keyed hash).
   */
  decompressInto(
    data: Buffer,
    out: Buffer,
    algorithm: HashAlgorithm,
    key?: Uint8Array,
  ): Promise<{ length: number; hash: string }>;
  /** Synchronous, for the small probe that decides whether a chunk is worth compressing. */
  compressSync(data: Buffer): Buffer;
}

const ZSTD_LEVEL = 1;

/** Copies a result computed on the main thread into `out`; -1 if it does not fit. */
function copyInto(result: Buffer, out: Buffer): number {
  if (result.length > out.length) return -1;
  result.copy(out);
  return result.length;
}

const none: Codec = {
  name: 'none',
  id: CODEC_IDS.none,
  compressInto: async (data, out) => copyInto(data, out),
  decompressInto: async (data, out, algorithm, key) => ({
    length: copyInto(data, out),
    hash: await hashChunk(data, algorithm, key),
  }),
  compressSync: (data) => data,
};

const zstdCodec: Codec = {
  name: 'zstd',
  id: CODEC_IDS.zstd,
  compressInto: (data, out) => chunkWorkers().compressInto(data, out, ZSTD_LEVEL),
  decompressInto: (data, out, algorithm, key) => chunkWorkers().decompressInto(data, out, algorithm, key),
  compressSync: (data) => zstd().compress(data, ZSTD_LEVEL),
};

const deflate: Codec = {
  name: 'deflate',
  id: CODEC_IDS.deflate,
  compressInto: async (data, out) => copyInto(await deflateAsync(data, { level: 1 }), out),
  async decompressInto(data, out, algorithm, key) {
    const raw = await inflateAsync(data);
    const length = copyInto(raw, out);
    if (length < 0) throw new RangeError('inflated chunk is longer than expected');
    return { length, hash: await hashChunk(raw, algorithm, key) };
  },
  compressSync: (data) => deflateRawSync(data, { level: 1 }),
};

const BY_NAME: Record<CodecName, Codec> = { none, zstd: zstdCodec, deflate };
const BY_ID = new Map<number, Codec>(Object.values(BY_NAME).map((c) => [c.id, c]));

export function codecByName(name: CodecName): Codec {
  return BY_NAME[name];
}

export function codecById(id: number): Codec | undefined {
  return BY_ID.get(id);
}
