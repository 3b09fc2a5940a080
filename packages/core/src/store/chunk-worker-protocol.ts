/**
 * The messages between the chunk worker pool (chunk-workers.ts) and its threads (chunk-worker.js), and
 * the hashes the threads compute. Types only: the worker imports them through JSDoc, so no other
 * package's type check ever has to read the worker's JavaScript.
 */

/**
 * The hashes the workers compute (see `HashAlgorithm` in chunk-hash.ts for which names chunks);
 * `keyed-blake3` is BLAKE3 in keyed mode, with the 32-byte key handed over with each task (an encrypted
 * store's chunk names, see store/encryption.ts).
 */
export type HashAlgorithm = 'sha256' | 'blake3' | 'keyed-blake3';

export interface DigestTask {
  op: 'digest';
  data: Uint8Array;
  algorithm: HashAlgorithm;
  /** The key of a keyed hash. */
  key?: Uint8Array;
}

export interface CompressTask {
  op: 'compress';
  data: Uint8Array;
  /** Shared memory the compressed bytes go into. */
  out: Uint8Array;
  level: number;
}

export interface DecompressTask {
  op: 'decompress';
  data: Uint8Array;
  /** Shared memory the decompressed bytes go into. */
  out: Uint8Array;
  algorithm: HashAlgorithm;
  /** The key of a keyed hash. */
  key?: Uint8Array;
}

export interface EqualsTask {
  op: 'equals';
  data: Uint8Array;
  expect: Uint8Array;
  /** `data` is the bytes themselves, not zstd. */
  raw: boolean;
}

export type Task = DigestTask | CompressTask | DecompressTask | EqualsTask;

/** What each kind of task answers; a compressed `length` of -1 means the result did not fit. */
export interface Results {
  digest: { hash: string };
  compress: { length: number };
  decompress: { length: number; hash: string };
  equals: { equal: boolean };
}

export type Request = Task & { id: number };
export type Reply = { id: number; result: Results[Task['op']] } | { id: number; error: string };
