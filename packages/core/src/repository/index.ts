/**
 * `@backy/core/store`: what a store driver needs (the S3 driver is one; a third party could write
 * another): `defineStoreDriver`, the backend contract it implements (a handful of byte-level methods), the built-in
 * directory backend, the errors it throws and the chunk pool its pooled loads use. Everything above the
 * bytes (codec, encryption, checks, quarantine, leases, catalog) is the repository's. Backends are
 * tested with `testBackend`, the store over them with `testChunkStore`, from `@backy/core/testing`.
 * The entry sits here, above the repository it exports, so that store/ (the primitives the repository
 * builds on) never imports the repository.
 */
export type {
  Backend,
  BackendCapabilities,
  BackendObject,
  LoadOptions,
  ObjectLock,
  SaveOptions,
} from '../backend/contract.js';
export { DirectoryBackend } from '../backend/directory.js';
export { chunkBuffers } from '../buffer-pool.js';
export { BackyError, type BackyErrorCode, isBackyError } from '../errors.js';
export { revisionFileName, revisionIdOfRevFile } from '../format/archive-files.js';
export type { Lock, LockMode } from '../lock.js';
export { checkDuration } from '../schedule.js';
export type { RegistryEntry } from '../store/archive-registry.js';
export { CHUNK_HASH, type ChunkCheck, type HashAlgorithm, hashChunk } from '../store/chunk-hash.js';
export type { Codec, CodecName } from '../store/codec.js';
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
  StoreDriverTable,
  StoreEntry,
} from '../store/contract.js';
export { defineStoreDriver, directoryStoreDriver, isStoreDriver } from '../store/drivers.js';
export type { StoreKey } from '../store/key-file.js';
export { type ChunkStoreOptions, DirectoryChunkStore } from './chunk-store.js';
export { Repository, type RepositoryOptions } from './repository.js';
