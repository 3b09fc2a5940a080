import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RevisionReader } from '@backy/core';
import { type Extent, STATE_HOLE, STATE_ZERO } from '@backy/nbd-protocol';

/** A piece of a read: `data` null means the range reads as zeros (a hole). */
export interface ReadPiece {
  offset: number;
  length: number;
  data: Buffer | null;
}

/** A tiny LRU of chunk reads, keyed by chunk index; concurrent requests for one chunk share one read. */
export class ChunkCache {
  private readonly entries = new Map<number, Promise<Buffer>>();

  constructor(
    private readonly reader: RevisionReader,
    private readonly capacity: number,
  ) {}

  get(index: number): Promise<Buffer> {
    const hit = this.entries.get(index);
    if (hit) {
      this.entries.delete(index);
      this.entries.set(index, hit);
      return hit;
    }
    const promise = this.reader.read(index);
    if (this.capacity > 0) {
      this.entries.set(index, promise);
      promise.catch(() => {
        if (this.entries.get(index) === promise) this.entries.delete(index);
      });
      while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    }
    return promise;
  }

  has(index: number): boolean {
    return this.entries.has(index);
  }

  clear(): void {
    this.entries.clear();
  }
}

type OverlayState = 'data' | 'zero';

/**
 * The view of one export for one connection: a revision read through a small chunk cache and, with
 * copy-on-write enabled, an overlay that keeps this connection's writes in an unlinked temporary file.
 * Copy-on-write works per chunk: the first write into a chunk copies it into the overlay file.
 */
export class ExportImage {
  readonly size: number;
  readonly chunkSize: number;
  private readonly cache: ChunkCache;
  private overlay: { dir: string; handle: FileHandle } | null = null;
  private readonly state = new Map<number, OverlayState>();
  private readonly locks = new Map<number, Promise<void>>();

  private constructor(
    readonly reader: RevisionReader,
    cacheChunks: number,
    readonly writable: boolean,
  ) {
    this.size = reader.size;
    this.chunkSize = reader.chunkSize;
    this.cache = new ChunkCache(reader, cacheChunks);
  }

  /** `overlayDir`: where the copy-on-write file goes (default: the OS temp directory). */
  static async open(
    reader: RevisionReader,
    options: { cacheChunks: number; cow: boolean; overlayDir?: string },
  ): Promise<ExportImage> {
    const image = new ExportImage(reader, options.cacheChunks, options.cow);
    if (options.cow) {
      const dir = await mkdtemp(join(options.overlayDir ?? tmpdir(), 'backy-nbd-cow-'));
      try {
        const path = join(dir, 'overlay');
        const handle = await open(path, 'w+', 0o600);
        // Unlinked at once: the writes vanish with the connection, even if this process is killed.
        await rm(dir, { recursive: true, force: true });
        await handle.truncate(reader.size);
        image.overlay = { dir, handle };
      } catch (error) {
        await rm(dir, { recursive: true, force: true });
        throw error;
      }
    }
    return image;
  }

  async close(): Promise<void> {
    this.cache.clear();
    const overlay = this.overlay;
    this.overlay = null;
    await overlay?.handle.close().catch(() => {});
    await rm(overlay?.dir ?? '', { recursive: true, force: true }).catch(() => {});
  }

  private isHole(index: number): boolean {
    const s = this.state.get(index);
    if (s != null) return s === 'zero';
    return this.reader.isZero(index);
  }

  /** Starts reading a chunk in the background so a sequential reader finds it in the cache. */
  private prefetch(index: number): void {
    if (index >= this.reader.chunkCount || this.state.has(index) || this.reader.isZero(index)) return;
    if (this.cache.has(index)) return;
    this.cache.get(index).catch(() => {});
  }

  /**
   * The content of [offset, offset + length) as pieces in order: data slices and holes. All chunk reads of
   * the range start at once; pieces are yielded as they complete, in order.
   */
  async *read(offset: number, length: number): AsyncGenerator<ReadPiece> {
    const end = offset + length;
    const cs = this.chunkSize;
    const pending: { offset: number; length: number; data: Promise<Buffer> | null }[] = [];
    for (let index = Math.floor(offset / cs); index * cs < end; index++) {
      const start = Math.max(offset, index * cs);
      const stop = Math.min(end, (index + 1) * cs);
      let data: Promise<Buffer> | null = null;
      if (!this.isHole(index)) {
        data =
          this.state.get(index) === 'data'
            ? this.readOverlay(start, stop - start)
            : this.sliceChunk(index, start - index * cs, stop - start);
        data.catch(() => {});
      }
      const last = pending.at(-1);
      if (data == null && last != null && last.data == null) last.length += stop - start;
      else pending.push({ offset: start, length: stop - start, data });
    }
    const lastIndex = Math.floor((end - 1) / cs);
    if (end > lastIndex * cs + cs * 0.75) this.prefetch(lastIndex + 1);
    for (const piece of pending) {
      yield {
        offset: piece.offset,
        length: piece.length,
        data: piece.data == null ? null : await piece.data,
      };
    }
  }

  private async sliceChunk(index: number, from: number, length: number): Promise<Buffer> {
    const chunk = await this.cache.get(index);
    return chunk.subarray(from, from + length);
  }

  private async readOverlay(position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.overlay!.handle.read(buffer, got, length - got, position + got);
      if (bytesRead === 0) {
        buffer.fill(0, got);
        break;
      }
      got += bytesRead;
    }
    return buffer;
  }

  /** base:allocation extents for [offset, offset + length): zero chunks are holes that read as zeros. */
  blockStatus(offset: number, length: number, one: boolean): Extent[] {
    const end = Math.min(offset + length, this.size);
    const cs = this.chunkSize;
    const extents: Extent[] = [];
    for (let index = Math.floor(offset / cs); index * cs < end; index++) {
      const start = Math.max(offset, index * cs);
      const stop = Math.min(end, (index + 1) * cs);
      const flags = this.isHole(index) ? STATE_HOLE | STATE_ZERO : 0;
      const last = extents.at(-1);
      if (last != null && last.flags === flags && last.length + (stop - start) <= 0xffffffff) {
        last.length += stop - start;
      } else {
        if (one && last != null) break;
        extents.push({ length: stop - start, flags });
      }
    }
    return extents;
  }

  /** Writes into the copy-on-write overlay. */
  async write(offset: number, data: Buffer): Promise<void> {
    await this.forChunks(offset, data.length, async (index, start, stop) => {
      const piece = data.subarray(start - offset, stop - offset);
      await this.withChunk(index, async () => {
        if (stop - start < this.reader.chunkLength(index)) await this.copyUp(index);
        await this.writeOverlay(piece, start);
        this.state.set(index, 'data');
      });
    });
  }

  /** Makes a range read as zeros in the overlay (NBD_CMD_WRITE_ZEROES and NBD_CMD_TRIM). */
  async zero(offset: number, length: number): Promise<void> {
    await this.forChunks(offset, length, async (index, start, stop) => {
      await this.withChunk(index, async () => {
        if (stop - start === this.reader.chunkLength(index)) {
          this.state.set(index, 'zero');
          return;
        }
        if (this.isHole(index)) return;
        await this.copyUp(index);
        await this.writeOverlay(Buffer.alloc(stop - start), start);
      });
    });
  }

  private async forChunks(
    offset: number,
    length: number,
    task: (index: number, start: number, stop: number) => Promise<void>,
  ): Promise<void> {
    if (!this.writable || this.overlay == null) throw new Error('export is read-only');
    const end = offset + length;
    const cs = this.chunkSize;
    const tasks: Promise<void>[] = [];
    for (let index = Math.floor(offset / cs); index * cs < end; index++) {
      tasks.push(task(index, Math.max(offset, index * cs), Math.min(end, (index + 1) * cs)));
    }
    const results = await Promise.allSettled(tasks);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** Serializes overlay changes per chunk, so two partial writes never both copy the chunk up. */
  private async withChunk(index: number, task: () => Promise<void>): Promise<void> {
    const previous = this.locks.get(index) ?? Promise.resolve();
    const run = previous.then(task);
    const tail = run.catch(() => {});
    this.locks.set(index, tail);
    try {
      await run;
    } finally {
      if (this.locks.get(index) === tail) this.locks.delete(index);
    }
  }

  /** Brings the chunk's current content into the overlay file before a partial change. */
  private async copyUp(index: number): Promise<void> {
    const s = this.state.get(index);
    if (s === 'data') return;
    const position = index * this.chunkSize;
    if (s === 'zero') {
      await this.writeOverlay(Buffer.alloc(this.reader.chunkLength(index)), position);
    } else if (!this.reader.isZero(index)) {
      // The overlay file is sparse: a zero chunk needs no copy, its range already reads as zeros.
      await this.writeOverlay(await this.cache.get(index), position);
    }
    this.state.set(index, 'data');
  }

  private async writeOverlay(data: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.overlay!.handle.write(
        data,
        done,
        data.length - done,
        position + done,
      );
      done += bytesWritten;
    }
  }
}
