import type { HashAlgorithm } from './store/chunk-hash.js';

/**
 * The seam between sources and storage. Sources only see these two interfaces; how a revision is stored
 * (chunk store, plain image files) is the layout's business.
 */

/** Reads one stored revision. Every `read` is verified against the stored hash. */
export interface RevisionReader {
  readonly size: number;
  readonly chunkSize: number;
  readonly chunkCount: number;
  /** Length of chunk `index` (the last may be short). */
  chunkLength(index: number): number;
  /** True if the chunk is known to be all zeros without reading it. */
  isZero(index: number): boolean;
  /** The hash that names this revision's chunks (`chunkHash`); `mmh3` for backy 2.2–2.5 revisions. */
  readonly hashAlgorithm: HashAlgorithm | 'mmh3';
  /** Content hash (hex, by `hashAlgorithm`) of the chunk, null for a zero chunk. */
  chunkHash(index: number): string | null;
  /** The hash of `data` as `chunkHash` names chunks, where that needs a key (an encrypted store's). */
  hashData?(data: Buffer): Promise<string>;
  /** The chunk's bytes, verified. Zero chunks come back as zero-filled buffers. */
  read(index: number): Promise<Buffer>;
  /**
   * Optional: like `read`, but the result may be a pooled buffer that the caller must hand back with
   * `chunkBuffers.release` once nothing reads it any more. Saves a copy on streaming paths, which may
   * also ask to bypass the page cache (`bypassCache`) when they read every chunk once.
   */
  readPooled?(index: number, options?: { bypassCache?: boolean }): Promise<Buffer>;
  /**
   * Optional: true if the stored bytes of chunk `index` are exactly `data`, compared byte for byte
   * without hashing. That alone does not prove the stored chunk matches its hash; it is for checking a
   * chunk a backup just stored from bytes that hashed to it against those bytes read again (see
   * `VerifyContext.checkChunk`), where equal bytes prove both.
   */
  equalsStored?(index: number, data: Buffer): Promise<boolean>;
  close(): Promise<void>;
}

export interface WriterStats {
  bytesWritten: number;
  chunksWritten: number;
  chunksReused: number;
  chunksZero: number;
}

/**
 * Builds a new revision. It starts as a copy of the parent's content (or empty), so a source only has to
 * report what changed. `write` applies back-pressure: await it before producing the next chunk.
 */
export interface RevisionWriter {
  readonly chunkSize: number;
  /** Current image size in bytes. */
  readonly size: number;
  readonly chunkCount: number;
  chunkLength(index: number): number;
  /**
   * A buffer for one chunk's content (`length` bytes, uninitialised) that the writer recycles after
   * `write`; sources should read into these rather than allocate their own.
   */
  allocate(length: number): Buffer;
  /** Stores new content for chunk `index` (its full length; the writer owns the buffer afterwards). */
  write(index: number, data: Buffer): Promise<void>;
  /** Marks chunk `index` as unchanged from the parent. */
  keep(index: number): void;
  /** Marks chunk `index` as all zeros. */
  zero(index: number): void;
  /** Changes the image size; new space reads as zeros. */
  resize(size: number): Promise<void>;
  /** Hash of the chunk as it stands now in the new revision, or null if zero. */
  currentHash(index: number): string | null;
  readonly stats: Readonly<WriterStats>;
}
