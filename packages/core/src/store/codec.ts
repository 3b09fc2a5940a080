import { promisify } from 'node:util';
import { deflateRaw, deflateRawSync, inflateRaw } from 'node:zlib';
import * as zstd from 'zstd-napi';
import { chunkWorkers } from './chunk-workers.js';

const deflateAsync = promisify(deflateRaw);
const inflateAsync = promisify(inflateRaw);

/**
 * Compression codecs for chunks. zstd level 1 is the default: measured on the 2-core reference machine
 * (scripts/bench-codecs.mjs) on VM-like log text it compresses about as fast as lz4 (~300 MB/s per
 * core) to a third smaller output (ratio 0.28 against lz4's 0.43) and decompresses at ~1.2 GB/s.
 * lz4-napi was dropped: its buffers are never returned to the OS (RSS grew past 700 MB in 300 calls).
 * deflate (zlib, level 1) needs no native module; `none` stores chunks as they are.
 */
export const CODECS = ['zstd', 'deflate', 'none'] as const;
export type CodecName = (typeof CODECS)[number];

/** On-disk codec ids (1 was lz4 in early development builds); 0 is also used for chunks that did not compress. */
export const CODEC_IDS = { none: 0, deflate: 2, zstd: 3 } as const satisfies Record<CodecName, number>;

export interface Codec {
  readonly name: CodecName;
  readonly id: number;
  compress(data: Buffer): Promise<Buffer>;
  decompress(data: Buffer, rawLength: number): Promise<Buffer>;
  /** Decompresses and hashes in one step, where the codec can do that off the main thread. */
  decompressAndHash?(data: Buffer): Promise<{ data: Buffer; hash: string }>;
  /** Synchronous, for the small probe that decides whether a chunk is worth compressing. */
  compressSync(data: Buffer): Buffer;
}

const ZSTD_LEVEL = 1;

const none: Codec = {
  name: 'none',
  id: CODEC_IDS.none,
  compress: async (data) => data,
  decompress: async (data) => data,
  compressSync: (data) => data,
};

const zstdCodec: Codec = {
  name: 'zstd',
  id: CODEC_IDS.zstd,
  compress: (data) => chunkWorkers().compress(data, ZSTD_LEVEL),
  decompress: async (data) => (await chunkWorkers().decompress(data)).data,
  decompressAndHash: (data) => chunkWorkers().decompress(data),
  compressSync: (data) => zstd.compress(data, { compressionLevel: ZSTD_LEVEL }),
};

const deflate: Codec = {
  name: 'deflate',
  id: CODEC_IDS.deflate,
  compress: (data) => deflateAsync(data, { level: 1 }),
  decompress: (data) => inflateAsync(data),
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
