import { BackyError, type RevisionReader, type RevisionWriter } from '@backy/core/source';
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

export interface ApplyDiffResult {
  size: number;
  /** Chunks that got new content from the stream (fully or partly). */
  chunksChanged: number;
  /** Of those, chunks that had to be read from the base to be patched. */
  chunksPatched: number;
  /** Chunks the stream left alone. */
  chunksKept: number;
  bytesData: number;
  bytesZeroed: number;
}

/** The chunk being assembled; the stream is ordered, so only one is open at a time. */
interface OpenChunk {
  index: number;
  length: number;
  /** Zero-filled when allocated; null while only zero records have touched the chunk. */
  buffer: Buffer | null;
  /** Byte ranges the stream covered, ascending and disjoint (records never overlap). */
  covered: [number, number][];
  coveredBytes: number;
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
  const { writer, base } = options;
  const chunkSize = writer.chunkSize;
  const result: ApplyDiffResult = {
    size: 0,
    chunksChanged: 0,
    chunksPatched: 0,
    chunksKept: 0,
    bytesData: 0,
    bytesZeroed: 0,
  };
  let size: number | null = null;
  let ended = false;
  let current: OpenChunk | null = null;
  /** Chunks below this index are done (written or kept). */
  let nextUnhandled = 0;

  const keepUpTo = (end: number) => {
    for (let index = nextUnhandled; index < end; index++) {
      if (base != null && index < base.chunkCount) writer.keep(index);
      result.chunksKept++;
    }
    nextUnhandled = Math.max(nextUnhandled, end);
  };

  const close = async (chunk: OpenChunk) => {
    result.chunksChanged++;
    if (chunk.coveredBytes === chunk.length) {
      if (chunk.buffer == null) writer.zero(chunk.index);
      else await writer.write(chunk.index, chunk.buffer);
    } else {
      const buffer = chunk.buffer ?? Buffer.alloc(chunk.length);
      // Gaps the stream did not cover keep the base's bytes; beyond the base's end the image reads as zeros.
      const gaps: [number, number][] = [];
      let at = 0;
      for (const [start, end] of [...chunk.covered, [chunk.length, chunk.length] as [number, number]]) {
        if (start > at) gaps.push([at, start]);
        at = end;
      }
      const baseLength =
        base != null && chunk.index < base.chunkCount && !base.isZero(chunk.index)
          ? base.chunkLength(chunk.index)
          : 0;
      if (gaps.some(([start]) => start < baseLength)) {
        const old = await base!.read(chunk.index);
        result.chunksPatched++;
        for (const [start, end] of gaps)
          if (start < old.length) old.copy(buffer, start, start, Math.min(end, old.length));
      }
      await writer.write(chunk.index, buffer);
    }
    nextUnhandled = chunk.index + 1;
  };

  /** Returns the open chunk for `index`, closing the previous one and keeping the chunks in between. */
  const open = async (index: number): Promise<OpenChunk> => {
    if (current?.index === index) return current;
    if (current != null) {
      if (index < current.index)
        throw new BackyError(
          'SOURCE_FAILED',
          `rbd diff stream is not ordered (chunk ${index} after chunk ${current.index})`,
        );
      await close(current);
      current = null;
    }
    keepUpTo(index);
    current = { index, length: writer.chunkLength(index), buffer: null, covered: [], coveredBytes: 0 };
    return current;
  };

  const cover = (chunk: OpenChunk, start: number, end: number) => {
    const last = chunk.covered.at(-1);
    if (last != null && last[1] === start) last[1] = end;
    else chunk.covered.push([start, end]);
    chunk.coveredBytes += end - start;
  };

  for await (const record of records) {
    options.signal?.throwIfAborted();
    switch (record.type) {
      case 'from-snap':
        if (options.expectFrom !== undefined && record.name !== (options.expectFrom ?? '')) {
          throw new BackyError(
            'SOURCE_FAILED',
            `rbd diff stream starts from snapshot ${JSON.stringify(record.name)}, expected ${JSON.stringify(options.expectFrom)}`,
          );
        }
        break;
      case 'to-snap':
        if (options.expectTo != null && record.name !== options.expectTo) {
          throw new BackyError(
            'SOURCE_FAILED',
            `rbd diff stream ends at snapshot ${JSON.stringify(record.name)}, expected ${JSON.stringify(options.expectTo)}`,
          );
        }
        break;
      case 'size':
        size = record.size;
        await writer.resize(size);
        break;
      case 'data': {
        let offset = record.offset;
        let at = 0;
        while (at < record.data.length) {
          const index = Math.floor(offset / chunkSize);
          const chunk = await open(index);
          const start = offset - index * chunkSize;
          const n = Math.min(chunk.length - start, record.data.length - at);
          chunk.buffer ??= Buffer.alloc(chunk.length);
          record.data.copy(chunk.buffer, start, at, at + n);
          cover(chunk, start, start + n);
          at += n;
          offset += n;
        }
        result.bytesData += record.data.length;
        options.onData?.(record.data.length);
        options.onProgress?.(offset, size!);
        break;
      }
      case 'zero': {
        let offset = record.offset;
        const end = record.offset + record.length;
        while (offset < end) {
          const index = Math.floor(offset / chunkSize);
          const chunk = await open(index);
          const start = offset - index * chunkSize;
          const n = Math.min(chunk.length - start, end - offset);
          // A fresh buffer is zero-filled and records never overlap: nothing to clear.
          cover(chunk, start, start + n);
          offset += n;
        }
        result.bytesZeroed += record.length;
        options.onProgress?.(end, size!);
        break;
      }
      case 'end':
        ended = true;
        break;
    }
  }
  if (!ended || size == null)
    throw new BackyError('SOURCE_FAILED', 'rbd diff stream ended without its end record');
  if (current != null) await close(current);
  keepUpTo(writer.chunkCount);
  result.size = size;
  options.onProgress?.(size, size);
  return result;
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
