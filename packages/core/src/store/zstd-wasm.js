// zstd decompression in WebAssembly, into memory that is reused for every chunk. Plain JavaScript with
// JSDoc types, for the same reason as native-modules.js (it runs from source and from the build).
//
// Why: on Node.js before 22.15 backy compresses with the @toondepauw/node-zstd addon, whose decoder makes
// a new zstd context and a new output buffer, grown as it goes, for every frame. Measured on 4 MiB chunks
// of log-like text (2-core reference machine): 148 MB/s, and each frame's memory is freed only when a
// garbage collection and a later turn of the event loop get to it. Decompressing into the same
// WebAssembly memory every time with one long-lived context ran at 437 MB/s in the same run, and its
// memory stays at its high-water mark: two buffers of a chunk and the context, ~10 MB per worker.
//
// The module is the compiled zstd of @bokuweb/zstd-wasm (MIT; the version is pinned exactly, because
// its exports are known here by their minified names). It is instantiated here, synchronously and
// without the package's JavaScript glue, with the five host functions it imports. If anything about it
// is not as expected, `loadWasmDecoder` returns null and the caller keeps the addon's decoder.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

export const ZSTD_WASM_PACKAGE = '@bokuweb/zstd-wasm';
const PAGE = 64 * 1024;

/** @typedef {{ readonly buffer: ArrayBuffer, grow(pages: number): number }} WasmMemory */
/**
 * Node's global WebAssembly (its types come with the DOM lib only, which this package leaves out).
 * @type {{ Module: new (bytes: Uint8Array) => object, Instance: new (module: object, imports: object) => { exports: unknown }, Memory: abstract new (...args: never[]) => WasmMemory }}
 */
const WA = /** @type {any} */ (globalThis).WebAssembly;

/**
 * @typedef {object} ZstdExports the parts of the module used, by their names in version 0.0.27
 * @property {WasmMemory} f
 * @property {() => void} g constructors
 * @property {(code: number) => number} h ZSTD_isError
 * @property {() => number} n ZSTD_createDCtx
 * @property {(dctx: number, dst: number, dstCapacity: number, src: number, srcSize: number, dict: number, dictSize: number) => number} q ZSTD_decompress_usingDict
 * @property {(size: number) => number} s malloc
 * @property {(pointer: number) => void} t free
 */

/**
 * @typedef {object} WasmDecoder
 * @property {(data: Uint8Array, maxLength: number) => Buffer} decompress the content of one frame, as a
 *   view of the module's memory that is valid until the next call; throws if it is longer than
 *   `maxLength` or is no zstd
 */

/** @returns {WasmDecoder | null} */
export function loadWasmDecoder() {
  /** @type {Uint8Array} */
  let bytes;
  try {
    bytes = readFileSync(join(dirname(require.resolve(ZSTD_WASM_PACKAGE)), 'zstd.wasm'));
  } catch {
    return null;
  }
  /** @type {WasmMemory | null} */
  let memory = null;
  const fail = (/** @type {string} */ what) => () => {
    throw new Error(`zstd (WebAssembly): ${what}`);
  };
  const imports = {
    a: {
      a: fail('exited'),
      b: () => {},
      c: fail('aborted'),
      d: () => 0,
      // emscripten_resize_heap: grow to at least the requested size; 1 on success.
      e: (/** @type {number} */ requested) => {
        if (memory == null) return 0;
        const missing = (requested >>> 0) - memory.buffer.byteLength;
        try {
          if (missing > 0) memory.grow(Math.ceil(missing / PAGE));
          return 1;
        } catch {
          return 0;
        }
      },
    },
  };
  /** @type {ZstdExports} */
  let x;
  try {
    x = /** @type {ZstdExports} */ (new WA.Instance(new WA.Module(bytes), imports).exports);
    if (!(x.f instanceof WA.Memory)) return null;
    for (const name of /** @type {const} */ (['g', 'h', 'n', 'q', 's', 't']))
      if (typeof x[name] !== 'function') return null;
    memory = x.f;
    x.g();
  } catch {
    return null;
  }
  const m = memory;
  const dctx = x.n();
  let capacity = 0;
  let src = 0;
  let dst = 0;
  /** Room for `length` bytes of input and of output, grown to the largest chunk seen and then reused. */
  const reserve = (/** @type {number} */ length) => {
    if (length <= capacity) return;
    if (src !== 0) x.t(src);
    if (dst !== 0) x.t(dst);
    src = x.s(length);
    dst = x.s(length);
    if (src === 0 || dst === 0) throw new Error('zstd (WebAssembly): out of memory');
    capacity = length;
  };
  /** @type {WasmDecoder} */
  const decoder = {
    decompress(data, maxLength) {
      reserve(Math.max(data.length, maxLength));
      new Uint8Array(m.buffer, src, data.length).set(data);
      const size = x.q(dctx, dst, maxLength, src, data.length, 0, 0) >>> 0;
      if (x.h(size)) throw new Error(`zstd: cannot decompress (error ${-size >>> 0})`);
      return Buffer.from(m.buffer, dst, size);
    },
  };
  // A frame made here must come back as it went in, or this module is not the one expected.
  try {
    const frame = Buffer.from('KLUv/QBIKQAAaGVsbG8=', 'base64'); // "hello", level 1
    if (decoder.decompress(frame, 16).toString() !== 'hello') return null;
  } catch {
    return null;
  }
  return decoder;
}
