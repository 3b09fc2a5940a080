// The compiled code chunks need — zstd and BLAKE3 — loaded on first use, on the main thread and in each
// chunk worker (chunk-worker.js) alike. Plain JavaScript with JSDoc types for the same reason as
// chunk-worker.js: the one file runs from source and from the build.
//
// Nothing here is loaded when the module is imported: `backy --version`, `--help` and the commands that
// read no chunk work even where a binary is missing, and a missing one is one line that names the
// package and what to do, not a stack trace.
//
// zstd: Node's own (node:zlib, from Node.js 22.15 and 23.8) where the runtime has it, else
// @toondepauw/node-zstd, a napi-rs addon whose binaries come inside npm packages (one optional
// dependency per platform), like @napi-rs/blake-hash's: neither needs a compiler or an install script.
// zstd-napi, used before, fetched its binary from outside the npm registry or compiled it with node-gyp,
// so `npm install --ignore-scripts` (and pnpm 10 by default) left it without one. Both write and read
// plain zstd frames: chunks written by any of them read with the others (codec id 3, chunk-file.ts).

import { createRequire } from 'node:module';
import { loadWasmDecoder, ZSTD_WASM_PACKAGE } from './zstd-wasm.js';

const require = createRequire(import.meta.url);

/** The npm package of the zstd addon used where Node.js has no zstd of its own. */
export const ZSTD_PACKAGE = '@toondepauw/node-zstd';
const BLAKE_PACKAGE = '@napi-rs/blake-hash';

/** @import { Blake, Zstd } from './native-modules.js' */

/** A binary that cannot be loaded; the message is the one line to show. */
export class NativeModuleError extends Error {
  /** @param {string} message @param {unknown} [cause] */
  constructor(message, cause) {
    super(message, { cause });
    this.name = 'NativeModuleError';
  }
}

/**
 * The name napi-rs gives the package of a platform's binary: `linux-x64-gnu`, `linux-arm64-musl`, …
 * (the platform packages' `os`, `cpu` and `libc`).
 */
function platformTriple() {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`;
  const report = /** @type {{ header?: { glibcVersionRuntime?: string } } | undefined} */ (
    process.report?.getReport?.()
  );
  return `linux-${process.arch}-${report?.header?.glibcVersionRuntime ? 'gnu' : 'musl'}`;
}

/** @param {unknown} error */
const firstLine = (error) => String((error instanceof Error && error.message) || error).split('\n')[0];

/**
 * Loads the napi-rs package `name`, or says in one line why it cannot: the package or its platform
 * binary is not installed (npm's `--omit=optional` leaves the binaries out), or the binary does not load.
 * @param {string} name
 * @param {string} purpose what the package is for, as the line's start
 * @returns {unknown}
 */
function requireNapi(name, purpose) {
  const reinstall = 'reinstall backy with its optional dependencies (not with --omit=optional)';
  let entry;
  try {
    entry = require.resolve(name);
  } catch (error) {
    throw new NativeModuleError(`${purpose}: the package ${name} is not installed; ${reinstall}`, error);
  }
  try {
    return require(entry);
  } catch (error) {
    const binary = `${name}-${platformTriple()}`;
    let installed = true;
    try {
      createRequire(entry).resolve(`${binary}/package.json`);
    } catch {
      installed = false;
    }
    const why = installed
      ? `its binary ${binary} does not load (${firstLine(/** @type {Error} */ (error).cause ?? error)})`
      : `its binary for this platform, the package ${binary}, is not installed`;
    throw new NativeModuleError(`${purpose}: ${name}: ${why}; ${reinstall}`, error);
  }
}

/**
 * The part of node:zlib used here (Node.js >= 22.15 and 23.8; the @types/node this package builds with
 * is older).
 * @typedef {object} ZlibZstd
 * @property {(data: Uint8Array, options: { params: Record<number, number> }) => Buffer} [zstdCompressSync]
 * @property {(data: Uint8Array, options: { maxOutputLength: number, chunkSize: number }) => Buffer} [zstdDecompressSync]
 * @property {{ ZSTD_c_compressionLevel?: number }} constants
 */

/** Node's own zstd, or null; node:zlib is read at first use (a test takes its zstd away to run the addon). */
function nodeZstd() {
  const zlib = /** @type {ZlibZstd} */ (require('node:zlib'));
  const { zstdCompressSync, zstdDecompressSync } = zlib;
  const LEVEL = zlib.constants.ZSTD_c_compressionLevel;
  if (zstdCompressSync == null || zstdDecompressSync == null || LEVEL == null) return null;
  /** @type {Zstd} */
  const zstd = {
    name: 'node:zlib',
    decompressReuses: false,
    compress: (data, level) => zstdCompressSync(data, { params: { [LEVEL]: level } }),
    // One output buffer, a byte larger than the content may be (zlib adds another buffer when one
    // fills up): zlib's default 16 KiB pieces, joined at the end, cost half the speed when measured.
    decompress: (data, maxLength) =>
      zstdDecompressSync(data, { maxOutputLength: maxLength, chunkSize: Math.max(64, maxLength + 1) }),
  };
  return zstd;
}

/** @returns {Zstd} */
function addonZstd() {
  const purpose = `zstd compression is not available: Node.js ${process.version} has none built in (22.15 and later have)`;
  const { Encoder, Decoder } =
    /** @type {{ Encoder: new (level: number) => { encodeSync(data: Uint8Array): Buffer }, Decoder: new () => { decodeSync(data: Uint8Array): Buffer } }} */ (
      requireNapi(ZSTD_PACKAGE, purpose)
    );
  /** @type {Map<number, { encodeSync(data: Uint8Array): Buffer }>} */
  const encoders = new Map();
  // Decompression in WebAssembly where it loads: 3x the addon's speed, in memory reused per chunk
  // (zstd-wasm.js has the figures); the addon's decoder otherwise.
  const wasm = loadWasmDecoder();
  if (wasm != null)
    return {
      name: `${ZSTD_PACKAGE} + ${ZSTD_WASM_PACKAGE}`,
      decompressReuses: true,
      compress: (data, level) => encoderFor(level).encodeSync(data),
      decompress: (data, maxLength) => wasm.decompress(data, maxLength),
    };
  const decoder = new Decoder();
  /** @param {number} level */
  function encoderFor(level) {
    let encoder = encoders.get(level);
    if (encoder == null) {
      encoder = new Encoder(level);
      encoders.set(level, encoder);
    }
    return encoder;
  }
  return {
    name: ZSTD_PACKAGE,
    decompressReuses: false,
    compress: (data, level) => encoderFor(level).encodeSync(data),
    decompress(data, maxLength) {
      const out = decoder.decodeSync(data);
      if (out.length > maxLength) throw new RangeError(`zstd content is longer than ${maxLength} bytes`);
      return out;
    },
  };
}

/** @type {Zstd | NativeModuleError | null} */
let zstd = null;
/** @type {Blake | NativeModuleError | null} */
let blake = null;

/**
 * @template T
 * @param {() => T} load
 * @returns {T | NativeModuleError}
 */
function attempt(load) {
  try {
    return load();
  } catch (error) {
    if (error instanceof NativeModuleError) return error;
    throw error;
  }
}

/**
 * zstd for this process (see the top of this file for which); throws a `NativeModuleError` that says
 * what to do when there is none.
 * @returns {Zstd}
 */
export function loadZstd() {
  zstd ??= attempt(() => nodeZstd() ?? addonZstd());
  if (zstd instanceof NativeModuleError) throw zstd;
  return zstd;
}

/**
 * BLAKE3 (@napi-rs/blake-hash); throws a `NativeModuleError` when its binary is missing.
 * @returns {Blake}
 */
export function loadBlake() {
  blake ??= attempt(
    () => /** @type {Blake} */ (requireNapi(BLAKE_PACKAGE, 'BLAKE3 hashing is not available')),
  );
  if (blake instanceof NativeModuleError) throw blake;
  return blake;
}
