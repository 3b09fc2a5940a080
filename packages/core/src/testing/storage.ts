/**
 * Storage internals for white-box tests of a source's data path (e.g. applying an RBD diff to a
 * revision with a tiny chunk size). Not part of the host or source API: a source never sees them, and
 * they may change with the storage format.
 */
export { ChunkedRevisionReader, ChunkedRevisionWriter } from '../layout/chunked.js';
export { mmh3Hex } from '../legacy/mmh3.js';
export { DirectoryChunkStore } from '../repository/chunk-store.js';
export { chunkHashHex, hashChunk, isAllZero } from '../store/chunk-hash.js';
export { ChunkMap } from '../store/chunk-map.js';

export { chunkChecker };

import type { Logger } from 'pino';
import { chunkChecker } from '../backup.js';
import type { Revision } from '../revision.js';
import type { RevisionReader } from '../revision-io.js';
import type { VerifyContext } from '../source/contract.js';

/**
 * The VerifyContext a backup hands a source, for calling `source.verify` directly on a stored revision
 * (e.g. with another budget): chunks are checked by their stored bytes and hashes.
 */
export function verifyContextFor(
  revision: Revision,
  reader: RevisionReader,
  logger: Logger,
  options: { budgetMs?: number; signal?: AbortSignal } = {},
): VerifyContext {
  return {
    revision,
    reader,
    logger,
    signal: options.signal ?? new AbortController().signal,
    freshChunks: new Set(),
    checkChunk: chunkChecker(reader, new Set(), logger),
    budgetMs: options.budgetMs ?? 60_000,
    progress: () => {},
    allocate: (length) => Buffer.allocUnsafe(length),
    release: () => {},
  };
}
