// The types of native-modules.js, for the TypeScript that imports it: the packages that type-check
// @backy/core from its sources do so without `allowJs` (native-modules.js is checked against this file
// through its JSDoc; see chunk-worker-protocol.ts for the same arrangement with the chunk worker).

/** zstd for chunks: Node's own or the addon's (native-modules.js says which and why). */
export interface Zstd {
  /** Where the implementation comes from: `node:zlib` or the addon's package. */
  readonly name: string;
  /** One zstd frame of `data`. */
  compress(data: Uint8Array, level: number): Buffer;
  /**
   * The content of a frame; throws if it is longer than `maxLength`, or is no zstd. Valid until the next
   * call: it may be a view of memory that the next call reuses.
   */
  decompress(data: Uint8Array, maxLength: number): Buffer;
  /** True when `decompress` returns memory it reuses (nothing for the garbage collector). */
  readonly decompressReuses: boolean;
}

/** The part of @napi-rs/blake-hash used. */
export interface Blake {
  blake3(data: Uint8Array): Buffer;
  Blake3Hasher: {
    newKeyed(key: Buffer): { update(data: Uint8Array): { digest(encoding: 'hex'): string } };
  };
}

/** A binary that cannot be loaded; the message is the one line to show. */
export declare class NativeModuleError extends Error {
  constructor(message: string, cause?: unknown);
}

/** The npm package of the zstd addon used where Node.js has no zstd of its own. */
export declare const ZSTD_PACKAGE: string;

/** zstd for this process; throws a `NativeModuleError` that says what to do when there is none. */
export declare function loadZstd(): Zstd;

/** BLAKE3 (@napi-rs/blake-hash); throws a `NativeModuleError` when its binary is missing. */
export declare function loadBlake(): Blake;
