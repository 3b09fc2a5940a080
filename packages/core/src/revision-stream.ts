import type { RevisionReader } from './revision-io.js';

export interface ChunkStreamOptions {
  /** Chunks read (and decompressed, verified) ahead of the consumer (default 4). */
  concurrency?: number;
  signal?: AbortSignal;
  /** Skip zero chunks instead of yielding zero-filled buffers. */
  skipZero?: boolean;
  start?: number;
  end?: number;
}

/** Yields a revision's chunks in order while reading the next ones in parallel. */
export async function* readChunksInOrder(
  reader: RevisionReader,
  options: ChunkStreamOptions = {},
): AsyncGenerator<{ index: number; data: Buffer | null }> {
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const end = Math.min(options.end ?? reader.chunkCount, reader.chunkCount);
  const window: { index: number; promise: Promise<Buffer | null> }[] = [];
  let next = options.start ?? 0;
  const schedule = () => {
    while (window.length < concurrency && next < end) {
      const index = next++;
      const zero = reader.isZero(index);
      const promise = zero && options.skipZero ? Promise.resolve(null) : reader.read(index);
      promise.catch(() => {}); // awaited in order below; avoid an unhandled rejection meanwhile
      window.push({ index, promise });
    }
  };
  schedule();
  while (window.length > 0) {
    options.signal?.throwIfAborted();
    const head = window.shift()!;
    const data = await head.promise;
    schedule();
    yield { index: head.index, data };
  }
}

/**
 * Runs `task` for every chunk index with bounded concurrency, in no particular order. Stops at the first
 * error and rethrows it after the running tasks have settled.
 */
export async function forEachChunk(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (failure == null && next < count) {
      const index = next++;
      try {
        signal?.throwIfAborted();
        await task(index);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker));
  if (failure != null) throw failure;
}
