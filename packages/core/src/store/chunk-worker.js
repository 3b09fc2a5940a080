// The body of one chunk worker thread: hashing, zstd compression and decompression on shared memory
// (chunk-workers.ts starts the threads and hands them work, and says why the work is done there).
//
// Plain JavaScript with JSDoc types, which tsc checks like the TypeScript around it (`checkJs`), so the
// very same file runs from source and from the build; chunk-workers.ts says why. The messages are typed
// in chunk-worker-protocol.ts.

import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort } from 'node:worker_threads';
import { loadBlake, loadZstd } from './native-modules.js';

/** @import { HashAlgorithm, Reply, Request, Results, Task } from './chunk-worker-protocol.js' */

const port = parentPort;
if (port == null) throw new Error('chunk-worker.js runs as a worker thread (see chunk-workers.ts)');

/** @type {Record<HashAlgorithm, (data: Buffer, key: Uint8Array | undefined) => string>} */
const hashers = {
  sha256: (data) => createHash('sha256').update(data).digest('hex'),
  blake3: (data) => loadBlake().blake3(data).toString('hex'),
  'keyed-blake3': (data, key) => {
    if (key?.byteLength !== 32) throw new Error('keyed-blake3 needs a 32-byte key');
    return loadBlake().Blake3Hasher.newKeyed(Buffer.from(key)).update(data).digest('hex');
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

/**
 * zstd hands back a new buffer for every chunk (node:zlib and the addon alike), which is garbage as soon
 * as it is copied into the caller's shared buffer. V8 sees only a small heap here and collects late, so
 * each worker held on to a few hundred MB of dead chunks: `pnpm bench` at 1 GiB peaked at 458 MB with
 * the addon against 227 MB with zstd-napi (which wrote into the shared buffer itself). Collecting after
 * every 8 MiB of such garbage (two chunks) keeps that down. Measured with the built CLI on a 1 GiB
 * VM-like image (Node 20, the addon), peak RSS of backup / restore: no collection 480 / 342 MB, every
 * 32 MiB 358 / 303 MB, every 8 MiB 278 / 237 MB, every 4 MiB 260 / 250 MB.
 *
 * The collection is a minor one (the young generation only, where these buffers die): a full one each
 * time cost 1.7 s of CPU per worker in a profiled 4 GiB full backup. Minor ones free the same memory
 * (4 GiB backup peak RSS 301 MB with full, 308 MB with minor collections, 530 MB with none) for far less:
 * the backup's user CPU fell from 22.4 s to 18.0 s and its verification from 6.7 s to 5.2 s (2 cores).
 * Without a `gc` (the flag refused) V8 collects as before.
 */
const collect = (() => {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc');
    return typeof gc === 'function' ? /** @type {(options: { type: 'minor' }) => void} */ (gc) : null;
  } catch {
    return null;
  }
})();
const GARBAGE_LIMIT = 8 * 1024 * 1024;
let garbage = 0;
/** Counts a dead buffer's bytes and collects once enough have piled up. @param {number} bytes */
function discarded(bytes) {
  garbage += bytes;
  if (garbage < GARBAGE_LIMIT || collect == null) return;
  garbage = 0;
  collect({ type: 'minor' });
}

/** A Buffer over the same (shared) memory: no copy. @param {Uint8Array} data */
const view = (data) => Buffer.from(data.buffer, data.byteOffset, data.byteLength);

/**
 * @param {Task} task
 * @returns {Results[Task['op']]}
 */
function run(task) {
  switch (task.op) {
    case 'digest':
      return { hash: hash(view(task.data), task.algorithm, task.key) };
    case 'compress': {
      // Into the caller's buffer: zstd returns a frame of its own (neither node:zlib nor the addon writes
      // into a given buffer), copied once; chunk-workers.ts has the measurements.
      const packed = loadZstd().compress(view(task.data), task.level);
      // The addon's output buffer holds room for the worst case (about the input's size), however small
      // the frame: count that, or text that compresses 5x piles up 5x the garbage between collections.
      discarded(view(task.data).length);
      if (packed.length > task.out.byteLength) return { length: -1 };
      view(task.out).set(packed);
      return { length: packed.length };
    }
    case 'decompress': {
      const zstd = loadZstd();
      const raw = zstd.decompress(view(task.data), task.out.byteLength);
      if (!zstd.decompressReuses) discarded(raw.length);
      view(task.out).set(raw);
      return { length: raw.length, hash: hash(raw, task.algorithm, task.key) };
    }
    case 'equals': {
      const wanted = view(task.expect);
      if (task.raw) return { equal: view(task.data).equals(wanted) };
      const zstd = loadZstd();
      let raw;
      try {
        raw = zstd.decompress(view(task.data), wanted.length);
      } catch {
        return { equal: false }; // damaged, or longer than expected
      }
      if (!zstd.decompressReuses) discarded(raw.length);
      return { equal: raw.equals(wanted) };
    }
    default:
      throw new Error(`unknown chunk worker task ${/** @type {{ op: unknown }} */ (task).op}`);
  }
}

// A message that cannot be read has no id to answer: end the worker, which fails all its tasks rather
// than leaving one waiting forever.
port.on('messageerror', () => process.exit(70));
/**
 * One task per turn of the event loop. The zstd addon's buffers are freed by finalizers that Node runs
 * from the loop's check phase (setImmediate), after a collection has found them dead; a MessagePort
 * hands over every queued message in one go and the pipeline keeps the queue full, so answering them
 * all in one turn let those finalizers wait for as long as the backup ran: RSS grew by ~6 MB per
 * decompressed chunk (1 GiB of text: 1.8 GB). Taking one task per turn lets them run in between.
 * @type {Request[]}
 */
const queue = [];
let scheduled = false;
function next() {
  scheduled = false;
  const message = queue.shift();
  if (message == null) return;
  if (queue.length > 0) schedule();
  /** @type {Reply} */
  let reply;
  try {
    reply = { id: message.id, result: run(message) };
  } catch (error) {
    reply = { id: message.id, error: String((error instanceof Error && error.message) || error) };
  }
  port?.postMessage(reply);
}
function schedule() {
  if (scheduled) return;
  scheduled = true;
  setImmediate(next);
}
port.on('message', (/** @type {Request} */ message) => {
  queue.push(message);
  schedule();
});
