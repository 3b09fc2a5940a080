/**
 * `@backy/core/testing`: the conformance suites a source, store or backend package runs against its real
 * backend (`testSource`, `testChunkStore`, `testBackend`), and the helpers and fixtures backy's own tests
 * share (temporary archives, log capture, VM-like data, store fixtures).
 */
export { type BackendFixture, type TestBackendOptions, testBackend } from './backend-suite.js';
export { encryptedStoreFixture, tempStoreKey } from './encrypted-store.js';
export * from './helpers.js';
export * from './main-fixtures.js';
export { type SourceFixture, type TestSourceOptions, testSource } from './source-suite.js';
export * from './storage.js';
export { type ChunkStoreFixture, type TestChunkStoreOptions, testChunkStore } from './store-suite.js';
