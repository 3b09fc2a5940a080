// The types of zstd-wasm.js, for TypeScript that type-checks @backy/core from its sources without
// `allowJs` (see native-modules.d.ts).

/** The npm package whose compiled zstd decompresses chunks where the zstd addon is used. */
export declare const ZSTD_WASM_PACKAGE: string;

export interface WasmDecoder {
  /**
   * The content of one frame, as a view of the module's memory that is valid until the next call;
   * throws if it is longer than `maxLength` or is no zstd.
   */
  decompress(data: Uint8Array, maxLength: number): Buffer;
}

/** The decoder, or null when the module is missing or not the one expected. */
export declare function loadWasmDecoder(): WasmDecoder | null;
