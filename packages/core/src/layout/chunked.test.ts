import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectoryChunkStore } from '../repository/chunk-store.js';
import type { PutResult } from '../store/contract.js';
import { ChunkedRevisionWriter } from './chunked.js';

/** A directory store that records how many puts run at once, each held for a while. */
class CountingStore extends DirectoryChunkStore {
  running = 0;
  most = 0;
  override async put(hash: string, data: Buffer, options?: { rewrite?: boolean }): Promise<PutResult> {
    this.most = Math.max(this.most, ++this.running);
    try {
      await new Promise((r) => setTimeout(r, 15));
      return await super.put(hash, data, options);
    } finally {
      this.running--;
    }
  }
}

let dir: string | null = null;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = null;
});

describe('ChunkedRevisionWriter', () => {
  it('runs at most `concurrency` chunks at once, however many readers call write at the same time', async () => {
    dir = await mkdtemp(join(tmpdir(), 'backy-chunked-'));
    const store = new CountingStore(join(dir, 'chunks'));
    await store.init();
    const chunkSize = 64 * 1024;
    const writer = new ChunkedRevisionWriter(store, { chunkSize, concurrency: 2 });
    await writer.resize(16 * chunkSize);
    // Four readers, as the file source reads ahead: each holds a buffer and calls write.
    let next = 0;
    const reader = async () => {
      while (next < 16) {
        const index = next++;
        await writer.write(index, randomBytes(chunkSize));
      }
    };
    await Promise.all([reader(), reader(), reader(), reader()]);
    const map = await writer.seal();
    expect(writer.stats.chunksWritten).toBe(16);
    expect(map.chunkCount).toBe(16);
    // Each running chunk holds its raw and its compressed buffer: more than `concurrency` at once is
    // memory the pool was not sized for.
    expect(store.most).toBe(2);
  });
});
