import { BackyError, type RevisionReader, type RevisionWriter } from '@backy/core/source';

/** What applying a diff did to the revision's chunks. */
export interface DiffCounts {
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

/** Marks `start..end` of the chunk as covered, merging it with the range it continues. */
function cover(chunk: OpenChunk, start: number, end: number): void {
  const last = chunk.covered.at(-1);
  if (last != null && last[1] === start) last[1] = end;
  else chunk.covered.push([start, end]);
  chunk.coveredBytes += end - start;
}

/** The ranges of the chunk the stream did not cover, ascending. */
function gapsOf(chunk: OpenChunk): [number, number][] {
  const gaps: [number, number][] = [];
  let at = 0;
  for (const [start, end] of [...chunk.covered, [chunk.length, chunk.length] as [number, number]]) {
    if (start > at) gaps.push([at, start]);
    at = end;
  }
  return gaps;
}

/**
 * Turns the data and zero records of an ordered diff stream into whole chunks of the writer: a chunk the
 * records touch is read from the base only when they leave part of it uncovered, patched once and
 * written once; a chunk only zero records cover becomes a zero chunk; chunks between records are kept.
 */
export class ChunkPatcher {
  readonly counts: DiffCounts = {
    chunksChanged: 0,
    chunksPatched: 0,
    chunksKept: 0,
    bytesData: 0,
    bytesZeroed: 0,
  };
  private readonly chunkSize: number;
  private current: OpenChunk | null = null;
  /** Chunks below this index are done (written or kept). */
  private nextUnhandled = 0;

  /** `base`: content the diff applies to, for chunks it touches only partly; null: it applies to zeros. */
  constructor(
    private readonly writer: RevisionWriter,
    private readonly base: RevisionReader | null,
  ) {
    this.chunkSize = writer.chunkSize;
  }

  /** Copies `data`, which starts at byte `offset` of the image, into the chunks it spans. */
  async data(offset: number, data: Buffer): Promise<void> {
    let at = 0;
    while (at < data.length) {
      const index = Math.floor(offset / this.chunkSize);
      const chunk = await this.open(index);
      const start = offset - index * this.chunkSize;
      const n = Math.min(chunk.length - start, data.length - at);
      chunk.buffer ??= Buffer.alloc(chunk.length);
      data.copy(chunk.buffer, start, at, at + n);
      cover(chunk, start, start + n);
      at += n;
      offset += n;
    }
    this.counts.bytesData += data.length;
  }

  /** Zeroes `length` bytes from byte `offset` of the image. */
  async zero(offset: number, length: number): Promise<void> {
    const end = offset + length;
    while (offset < end) {
      const index = Math.floor(offset / this.chunkSize);
      const chunk = await this.open(index);
      const start = offset - index * this.chunkSize;
      const n = Math.min(chunk.length - start, end - offset);
      // A fresh buffer is zero-filled and records never overlap: nothing to clear.
      cover(chunk, start, start + n);
      offset += n;
    }
    this.counts.bytesZeroed += length;
  }

  /** Writes the open chunk and keeps the chunks after it, up to the writer's (resized) end. */
  async end(): Promise<void> {
    if (this.current != null) await this.close(this.current);
    this.keepUpTo(this.writer.chunkCount);
  }

  /** Returns the open chunk for `index`, closing the previous one and keeping the chunks in between. */
  private async open(index: number): Promise<OpenChunk> {
    const current = this.current;
    if (current?.index === index) return current;
    if (current != null) {
      if (index < current.index)
        throw new BackyError(
          'SOURCE_FAILED',
          `rbd diff stream is not ordered (chunk ${index} after chunk ${current.index})`,
        );
      await this.close(current);
      this.current = null;
    }
    this.keepUpTo(index);
    this.current = {
      index,
      length: this.writer.chunkLength(index),
      buffer: null,
      covered: [],
      coveredBytes: 0,
    };
    return this.current;
  }

  private keepUpTo(end: number): void {
    const { base } = this;
    for (let index = this.nextUnhandled; index < end; index++) {
      if (base != null && index < base.chunkCount) this.writer.keep(index);
      this.counts.chunksKept++;
    }
    this.nextUnhandled = Math.max(this.nextUnhandled, end);
  }

  private async close(chunk: OpenChunk): Promise<void> {
    this.counts.chunksChanged++;
    if (chunk.coveredBytes === chunk.length) {
      if (chunk.buffer == null) this.writer.zero(chunk.index);
      else await this.writer.write(chunk.index, chunk.buffer);
    } else {
      await this.writer.write(chunk.index, await this.patched(chunk));
    }
    this.nextUnhandled = chunk.index + 1;
  }

  /** The chunk's content with the gaps the stream did not cover filled from the base. */
  private async patched(chunk: OpenChunk): Promise<Buffer> {
    const { base } = this;
    const buffer = chunk.buffer ?? Buffer.alloc(chunk.length);
    // Gaps keep the base's bytes; beyond the base's end the image reads as zeros.
    const gaps = gapsOf(chunk);
    const baseLength =
      base != null && chunk.index < base.chunkCount && !base.isZero(chunk.index)
        ? base.chunkLength(chunk.index)
        : 0;
    if (gaps.some(([start]) => start < baseLength)) {
      const old = await base!.read(chunk.index);
      this.counts.chunksPatched++;
      for (const [start, end] of gaps)
        if (start < old.length) old.copy(buffer, start, start, Math.min(end, old.length));
    }
    return buffer;
  }
}
