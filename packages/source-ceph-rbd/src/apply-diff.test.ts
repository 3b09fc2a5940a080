import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archive, newRevisionId, type RevisionData, type RevisionReader } from '@backy/core';
import {
  ChunkedRevisionReader,
  ChunkedRevisionWriter,
  type ChunkMap,
  chunkHashHex,
  DirectoryChunkStore,
  isAllZero,
  MiB,
} from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRawImage, applyRbdDiff } from './apply-diff.js';
import { encodeRbdDiff, parseRbdDiff, type RbdDiffRecord } from './diff-stream.js';

const CHUNK = 64;
let dir: string;
let store: DirectoryChunkStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backy-rbd-apply-'));
  store = new DirectoryChunkStore(join(dir, 'chunks'));
  await store.init();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A stored revision holding `content`, made with the real chunked writer. */
async function revisionOf(content: Buffer): Promise<ChunkedRevisionReader> {
  const writer = new ChunkedRevisionWriter(store, { chunkSize: CHUNK });
  await applyRawImage([content], { writer, size: content.length });
  return new ChunkedRevisionReader(store, await writer.seal());
}

async function contentOf(reader: RevisionReader): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < reader.chunkCount; i++) parts.push(await reader.read(i));
  return Buffer.concat(parts);
}

/** Counts base reads per chunk, to check that each chunk is read at most once and only when needed. */
function counting(reader: RevisionReader) {
  const reads: number[] = [];
  const wrapped: RevisionReader = Object.create(reader);
  wrapped.read = async (index: number) => {
    reads.push(index);
    return reader.read(index);
  };
  return { reader: wrapped, reads };
}

/** The reference semantics of a diff, applied to a plain buffer. */
function applyToBuffer(base: Buffer, records: RbdDiffRecord[]): Buffer {
  let image = Buffer.from(base);
  for (const r of records) {
    if (r.type === 'size') {
      const next = Buffer.alloc(r.size);
      image.copy(next, 0, 0, Math.min(image.length, r.size));
      image = next;
    } else if (r.type === 'data') r.data.copy(image, r.offset);
    else if (r.type === 'zero') image.fill(0, r.offset, r.offset + r.length);
  }
  return image;
}

async function apply(base: ChunkedRevisionReader, records: RbdDiffRecord[], pieceSize = 7) {
  const writer = new ChunkedRevisionWriter(store, {
    parentMap: base.map,
    chunkSize: CHUNK,
  });
  const { reader, reads } = counting(base);
  const stream = encodeRbdDiff(records);
  const pieces = Array.from({ length: Math.ceil(stream.length / pieceSize) }, (_, i) =>
    stream.subarray(i * pieceSize, (i + 1) * pieceSize),
  );
  const result = await applyRbdDiff(parseRbdDiff(pieces), {
    writer,
    base: reader,
    expectFrom: 'a',
    expectTo: 'b',
  });
  const map: ChunkMap = await writer.seal();
  return {
    result,
    reads,
    stats: writer.stats,
    content: await contentOf(new ChunkedRevisionReader(store, map)),
  };
}

const diff = (size: number, ...records: RbdDiffRecord[]): RbdDiffRecord[] => [
  { type: 'from-snap', name: 'a' },
  { type: 'to-snap', name: 'b' },
  { type: 'size', size },
  ...records,
  { type: 'end' },
];

describe('applyRbdDiff', () => {
  it('patches a partly touched chunk from the parent, reading it once for several records', async () => {
    const initial = randomBytes(CHUNK * 4);
    const base = await revisionOf(initial);
    const records = diff(
      initial.length,
      { type: 'data', offset: CHUNK + 3, data: Buffer.from('one') },
      { type: 'zero', offset: CHUNK + 10, length: 5 },
      { type: 'data', offset: CHUNK + 40, data: Buffer.from('two') },
    );
    const { content, reads, result, stats } = await apply(base, records);
    expect(content.equals(applyToBuffer(initial, records))).toBe(true);
    expect(reads).toEqual([1]);
    expect(result).toMatchObject({ chunksChanged: 1, chunksPatched: 1, chunksKept: 3 });
    expect(stats.chunksWritten).toBe(1);
  });

  it('does not read the parent for chunks the diff overwrites completely, in one record or several', async () => {
    const initial = randomBytes(CHUNK * 4);
    const base = await revisionOf(initial);
    const records = diff(
      initial.length,
      { type: 'data', offset: 0, data: randomBytes(CHUNK + 10) },
      { type: 'data', offset: CHUNK + 10, data: randomBytes(20) },
      { type: 'zero', offset: CHUNK + 30, length: CHUNK - 30 },
      { type: 'data', offset: 3 * CHUNK, data: randomBytes(CHUNK) },
    );
    const { content, reads } = await apply(base, records);
    expect(content.equals(applyToBuffer(initial, records))).toBe(true);
    expect(reads).toEqual([]);
  });

  it('turns zero records over whole chunks into zero chunks without reading or writing data', async () => {
    const initial = randomBytes(CHUNK * 4);
    const base = await revisionOf(initial);
    const records = diff(initial.length, { type: 'zero', offset: CHUNK, length: 2 * CHUNK });
    const { content, reads, stats } = await apply(base, records);
    expect(content.equals(applyToBuffer(initial, records))).toBe(true);
    expect(reads).toEqual([]);
    expect(stats.chunksZero).toBe(2);
    expect(stats.chunksWritten).toBe(0);
  });

  it('grows the revision with a size record; new space reads as zeros', async () => {
    const initial = randomBytes(CHUNK * 2 + 10);
    const base = await revisionOf(initial);
    const records = diff(
      CHUNK * 5,
      { type: 'data', offset: CHUNK * 2 + 20, data: Buffer.from('grown') },
      { type: 'data', offset: CHUNK * 4 + 1, data: Buffer.from('far') },
    );
    const { content, result } = await apply(base, records);
    expect(result.size).toBe(CHUNK * 5);
    expect(content.equals(applyToBuffer(initial, records))).toBe(true);
  });

  it('shrinks the revision with a size record, also when the diff does not touch the new last chunk', async () => {
    const initial = randomBytes(CHUNK * 4);
    const base = await revisionOf(initial);
    for (const records of [
      diff(CHUNK * 2 + 5),
      diff(CHUNK * 2 + 5, { type: 'data', offset: CHUNK * 2 + 1, data: Buffer.from('x') }),
    ]) {
      const { content } = await apply(base, records);
      expect(content.length).toBe(CHUNK * 2 + 5);
      expect(content.equals(applyToBuffer(initial, records))).toBe(true);
    }
  });

  it('matches the reference semantics on random diffs', async () => {
    for (let round = 0; round < 30; round++) {
      const initial = randomBytes(CHUNK * (1 + (round % 6)) + (round % 3) * 17);
      // Zero chunks in the parent too.
      initial.fill(0, 0, Math.min(initial.length, CHUNK));
      const base = await revisionOf(initial);
      const size = Math.max(1, initial.length + Math.floor((Math.random() - 0.5) * 3 * CHUNK));
      const records: RbdDiffRecord[] = [];
      let at = 0;
      while (true) {
        at += Math.floor(Math.random() * CHUNK);
        const length = 1 + Math.floor(Math.random() * CHUNK * 1.5);
        if (at + length > size) break;
        records.push(
          Math.random() < 0.6
            ? { type: 'data', offset: at, data: randomBytes(length) }
            : { type: 'zero', offset: at, length },
        );
        at += length;
      }
      const all = diff(size, ...records);
      const { content, reads } = await apply(base, all, 1 + (round % 11));
      expect(content.equals(applyToBuffer(initial, all)), `round ${round}`).toBe(true);
      expect(new Set(reads).size).toBe(reads.length);
    }
  });

  it('refuses a diff between other snapshots than expected', async () => {
    const base = await revisionOf(randomBytes(CHUNK));
    const records: RbdDiffRecord[] = [
      { type: 'from-snap', name: 'x' },
      { type: 'to-snap', name: 'b' },
      { type: 'size', size: CHUNK },
      { type: 'end' },
    ];
    await expect(apply(base, records)).rejects.toThrow(
      'rbd diff stream starts from snapshot "x", expected "a"',
    );
  });
});

describe('applyRawImage', () => {
  it('rejects a short or long raw stream', async () => {
    const writer = () => new ChunkedRevisionWriter(store, { chunkSize: CHUNK });
    await expect(applyRawImage([randomBytes(100)], { writer: writer(), size: 130 })).rejects.toThrow(
      'truncated rbd export stream: got 100 of 130 bytes',
    );
    await expect(applyRawImage([randomBytes(140)], { writer: writer(), size: 130 })).rejects.toThrow(
      'more than the image size of 130 bytes',
    );
  });
});

describe.each(['chunked', 'images'] as const)('applyRbdDiff on an archive with the %s layout', (layout) => {
  it('shrinks and grows to sizes that are not chunk multiples without touching the last chunk', async () => {
    const archive = await Archive.init(join(dir, `archive-${layout}`), { source: { type: 'x' }, layout });
    const content = randomBytes(16 * MiB);
    let parent: { revision: RevisionData; map: ChunkMap } | null = null;
    let expected: Buffer = content;
    for (const size of [16 * MiB, 7 * MiB, 9 * MiB + 512, 5 * MiB - 1]) {
      const uuid = newRevisionId();
      const transaction = await archive.begin(uuid);
      const { writer, parentReader } = await transaction.openWriter(parent);
      if (parent == null) await applyRawImage([content], { writer, size });
      else
        await applyRbdDiff(parseRbdDiff([encodeRbdDiff(diff(size))]), {
          writer,
          base: parentReader,
          expectFrom: 'a',
          expectTo: 'b',
        });
      const map = await writer.seal();
      expected = applyToBuffer(expected, [{ type: 'size', size }]);
      const rev: RevisionData = {
        uuid,
        timestamp: new Date().toISOString(),
        parent: parent?.revision.uuid ?? null,
        tags: ['t'],
        trust: 'trusted',
        size,
        backend_type: layout,
        stats: {
          bytes_written: 0,
          bytes_read: 0,
          duration: 0,
          chunks_written: 0,
          chunks_reused: 0,
          chunks_zero: 0,
        },
      };
      await transaction.commit(rev);
      const reader = transaction.reader(map);
      try {
        const data = await contentOf(reader);
        expect(data.equals(expected), `${layout} at ${size}`).toBe(true);
        for (let i = 0; i < reader.chunkCount; i++) {
          const chunk = expected.subarray(i * reader.chunkSize, i * reader.chunkSize + reader.chunkLength(i));
          expect(reader.chunkHash(i), `hash of chunk ${i} at ${size}`).toBe(
            isAllZero(chunk) ? null : chunkHashHex(chunk),
          );
        }
      } finally {
        await reader.close();
      }
      parent = { revision: rev, map };
    }
  });
});
