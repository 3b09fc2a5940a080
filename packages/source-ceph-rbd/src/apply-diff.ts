import { BackyError, type RevisionReader, type RevisionWriter } from '@backy/core/source';
import { ChunkPatcher, type DiffCounts } from './chunk-patcher.js';
import type { RbdDiffRecord } from './diff-stream.js';

export interface ApplyDiffOptions {
  /** Starts as a copy of `base` (the parent revision); receives the patched chunks. */
  writer: RevisionWriter;
  /** Content the diff applies to, for chunks the diff touches only partly. Null: the diff applies to zeros. */
  base: RevisionReader | null;
  /** Snapshot names the stream must name (checked when given). */
  expectFrom?: string | null;
  expectTo?: string;
  signal?: AbortSignal;
  /** Bytes of image data taken from the stream. */
  onData?(bytes: number): void;
  onProgress?(offset: number, size: number): void;
}

export interface ApplyDiffResult extends DiffCounts {
  size: number;
}

/**
 * Fails unless the stream names the snapshot the caller expects (`which`: where the stream says it); a
 * full diff names none, which the stream writes as the empty name.
 */
function expectSnapshot(which: 'starts from' | 'ends at', named: string, expected: string | null): void {
  if (named !== (expected ?? '')) {
    throw new BackyError(
      'SOURCE_FAILED',
      `rbd diff stream ${which} snapshot ${JSON.stringify(named)}, expected ${JSON.stringify(expected)}`,
    );
  }
}

/**
 * Applies an rbd diff stream to a revision writer: chunks the diff touches are read (only when not fully
 * overwritten), patched once and written once; zero records make zero chunks; the size record resizes
 * the revision; untouched chunks are kept from the parent.
 */
export async function applyRbdDiff(
  records: AsyncIterable<RbdDiffRecord>,
  options: ApplyDiffOptions,
): Promise<ApplyDiffResult> {
  const { writer } = options;
  const chunks = new ChunkPatcher(writer, options.base);
  let size: number | null = null;
  let ended = false;
  for await (const record of records) {
    options.signal?.throwIfAborted();
    switch (record.type) {
      case 'from-snap':
        if (options.expectFrom !== undefined) expectSnapshot('starts from', record.name, options.expectFrom);
        break;
      case 'to-snap':
        if (options.expectTo != null) expectSnapshot('ends at', record.name, options.expectTo);
        break;
      case 'size':
        size = record.size;
        await writer.resize(size);
        break;
      case 'data':
        await chunks.data(record.offset, record.data);
        options.onData?.(record.data.length);
        options.onProgress?.(record.offset + record.data.length, size!);
        break;
      case 'zero':
        await chunks.zero(record.offset, record.length);
        options.onProgress?.(record.offset + record.length, size!);
        break;
      case 'end':
        ended = true;
        break;
    }
  }
  if (!ended || size == null)
    throw new BackyError('SOURCE_FAILED', 'rbd diff stream ended without its end record');
  await chunks.end();
  options.onProgress?.(size, size);
  return { size, ...chunks.counts };
}

/**
 * Copies a raw image stream (`rbd export … -`) of `size` bytes into the writer, chunk by chunk. Fails if
 * the stream is shorter or longer than `size`.
 */
export async function applyRawImage(
  input: AsyncIterable<Buffer> | Iterable<Buffer>,
  options: {
    writer: RevisionWriter;
    size: number;
    signal?: AbortSignal;
    onData?(bytes: number): void;
    onProgress?(done: number, size: number): void;
  },
): Promise<void> {
  const { writer, size } = options;
  await writer.resize(size);
  let index = 0;
  let buffer: Buffer | null = null;
  let filled = 0;
  let total = 0;
  for await (const piece of input) {
    options.signal?.throwIfAborted();
    let at = 0;
    while (at < piece.length) {
      if (index >= writer.chunkCount) {
        throw new BackyError(
          'SOURCE_FAILED',
          `rbd export produced more than the image size of ${size} bytes`,
        );
      }
      buffer ??= Buffer.allocUnsafe(writer.chunkLength(index));
      const n = Math.min(buffer.length - filled, piece.length - at);
      piece.copy(buffer, filled, at, at + n);
      filled += n;
      at += n;
      if (filled === buffer.length) {
        const full = buffer;
        buffer = null;
        filled = 0;
        await writer.write(index++, full);
      }
    }
    total += piece.length;
    options.onData?.(piece.length);
    options.onProgress?.(total, size);
  }
  if (total !== size)
    throw new BackyError('SOURCE_FAILED', `truncated rbd export stream: got ${total} of ${size} bytes`);
}
