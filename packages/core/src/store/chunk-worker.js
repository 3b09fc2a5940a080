// The body of one chunk worker thread: hashing, zstd compression and decompression on shared memory
// (chunk-workers.ts starts the threads and hands them work, and says why the work is done there).
//
// Plain JavaScript with JSDoc types, which tsc checks like the TypeScript around it (`checkJs`), so the
// very same file runs from source and from the build; chunk-workers.ts says why. The messages are typed
// in chunk-worker-protocol.ts.

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { parentPort } from 'node:worker_threads';

/** @import { HashAlgorithm, Reply, Request, Results, Task } from './chunk-worker-protocol.js' */

const port = parentPort;
if (port == null) throw new Error('chunk-worker.js runs as a worker thread (see chunk-workers.ts)');

// Resolved from this file, which sits inside @backy/core both in src/ and in dist/.
const requireNative = createRequire(import.meta.url);
/** @type {typeof import('zstd-napi/binding.js') | null} */
let zstd = null;
/** @type {import('zstd-napi/binding.js').CCtx | null} */
let cctx = null;
/** @type {import('zstd-napi/binding.js').DCtx | null} */
let dctx = null;
/** @type {typeof import('@napi-rs/blake-hash') | null} */
let blake = null;
let scratch = Buffer.alloc(0);

function blakeHash() {
  blake ??= /** @type {typeof import('@napi-rs/blake-hash')} */ (requireNative('@napi-rs/blake-hash'));
  return blake;
}

/** @type {Record<HashAlgorithm, (data: Buffer, key: Uint8Array | undefined) => string>} */
const hashers = {
  sha256: (data) => createHash('sha256').update(data).digest('hex'),
  blake3: (data) => blakeHash().blake3(data).toString('hex'),
  'keyed-blake3': (data, key) => {
    if (key?.byteLength !== 32) throw new Error('keyed-blake3 needs a 32-byte key');
    return blakeHash().Blake3Hasher.newKeyed(Buffer.from(key)).update(data).digest('hex');
  },
};

/**
 * @param {Buffer} data
 * @param {HashAlgorithm} algorithm
 * @param {Uint8Array} [key]
 */
function hash(data, algorithm, key) {
  if (!Object.hasOwn(hashers, algorithm)) throw new Error(`unknown hash algorithm ${algorithm}`);
  return hashers[algorithm](data, key);
}

/** A Buffer over the same (shared) memory: no copy. @param {Uint8Array} data */
const view = (data) => Buffer.from(data.buffer, data.byteOffset, data.byteLength);

function codec() {
  zstd ??= /** @type {typeof import('zstd-napi/binding.js')} */ (requireNative('zstd-napi/binding.js'));
  cctx ??= new zstd.CCtx();
  dctx ??= new zstd.DCtx();
  return { zstd, cctx, dctx };
}

/**
 * @param {Task} task
 * @returns {Results[Task['op']]}
 */
function run(task) {
  switch (task.op) {
    case 'digest':
      return { hash: hash(view(task.data), task.algorithm, task.key) };
    case 'compress': {
      // Compresses into the caller's buffer.
      const { zstd, cctx } = codec();
      try {
        return { length: cctx.compress(view(task.out), view(task.data), task.level) };
      } catch (error) {
        if (task.out.byteLength < zstd.compressBound(task.data.byteLength)) return { length: -1 };
        throw error;
      }
    }
    case 'decompress': {
      const target = view(task.out);
      const length = codec().dctx.decompress(target, view(task.data));
      return { length, hash: hash(target.subarray(0, length), task.algorithm, task.key) };
    }
    case 'equals': {
      const wanted = view(task.expect);
      if (task.raw) return { equal: view(task.data).equals(wanted) };
      const { dctx } = codec();
      if (scratch.length < wanted.length) scratch = Buffer.allocUnsafe(wanted.length);
      let length;
      try {
        length = dctx.decompress(scratch.subarray(0, wanted.length), view(task.data));
      } catch {
        return { equal: false }; // damaged, or longer than expected
      }
      return { equal: length === wanted.length && scratch.subarray(0, length).equals(wanted) };
    }
    default:
      throw new Error(`unknown chunk worker task ${/** @type {{ op: unknown }} */ (task).op}`);
  }
}

// A message that cannot be read has no id to answer: end the worker, which fails all its tasks rather
// than leaving one waiting forever.
port.on('messageerror', () => process.exit(70));
port.on('message', (/** @type {Request} */ message) => {
  /** @type {Reply} */
  let reply;
  try {
    reply = { id: message.id, result: run(message) };
  } catch (error) {
    reply = { id: message.id, error: String((error instanceof Error && error.message) || error) };
  }
  port.postMessage(reply);
});
