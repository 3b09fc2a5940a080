/**
 * `@backy/core/store`: what a store driver needs (the S3 driver is one; a third party could write
 * another): the store contract, the chunk file format both drivers write, and its checks. Drivers are
 * tested with `testChunkStore` from `@backy/core/testing`.
 */
export { BackyError, type BackyErrorCode, isBackyError } from '../errors.js';
export { revisionFileName, revisionIdOfRevFile } from '../format/archive-files.js';
export type { Lock, LockMode } from '../lock.js';
export type { RegistryEntry } from './archive-registry.js';
export { chunkBuffers } from './buffer-pool.js';
export {
  type ChunkFile,
  chunkFileEquals,
  corruptChunk,
  decodeChunkFile,
  encodeChunkFile,
  parseChunkFile,
} from './chunk-file.js';
export { CHUNK_HASH, type ChunkCheck, type HashAlgorithm, hashChunk } from './chunk-hash.js';
export { type Codec, type CodecName, codecByName } from './codec.js';
export type {
  ChunkNaming,
  ChunkStore,
  PutResult,
  ReadOptions,
  RevisionCatalog,
  RevisionFileKind,
  StoreDriver,
  StoreDriverContext,
  StoreDrivers,
  StoreEntry,
} from './contract.js';
export { PutOnce, unpooled } from './put-once.js';
