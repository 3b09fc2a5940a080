import { randomBytes } from 'node:crypto';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Archive } from './archive/index.js';
import { mapPath } from './archive/paths.js';
import { copyRevisions } from './copy.js';
import { BackyError, isBackyError } from './errors.js';
import type { Revision } from './revision.js';
import { newKeyFile, writeKeyFile } from './store/key-file.js';
import { backupOf, MiB, silent } from './test-helpers.js';
import { restoreToBuffer, tempDir } from './testing/helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

const CHUNK = 4 * MiB;

/** Five distinct random chunks, a zero chunk, and a short last one. */
const image = () => {
  const data = Buffer.alloc(6 * CHUNK + 1000);
  randomBytes(5 * CHUNK).copy(data, 0);
  randomBytes(1000).copy(data, 6 * CHUNK);
  return data;
};

const archiveAt = (name: string, extra: Record<string, unknown> = {}) =>
  Archive.init(join(dir.path, name), { source: { type: 'test' }, ...extra });

const copyAll = async (source: Archive, target: Archive, revisions?: Revision[]) =>
  copyRevisions(source, target, revisions ?? (await source.revisions()), { logger: silent });

describe('copyRevisions', () => {
  it('sends only the chunks the target lacks, and the copies restore byte-identical', async () => {
    const source = await archiveAt('source');
    const target = await archiveAt('target');
    const v1 = image();
    const first = await backupOf(source, v1);
    const progress: number[] = [];
    const [copied] = await copyRevisions(source, target, [first], {
      logger: silent,
      onProgress: (p) => progress.push(p.done),
    });
    expect(copied).toMatchObject({ uuid: first.uuid, status: 'copied', chunksSent: 6, chunksPresent: 0 });
    expect(copied!.bytesSent).toBe(5 * CHUNK + 1000);
    expect(progress.at(-1)).toBe(v1.length);
    const [inTarget] = await target.revisions();
    // The same revision: uuid, tags, trust, stats, verification.
    expect(inTarget).toEqual(first);
    expect((await restoreToBuffer(target, first.uuid)).equals(v1)).toBe(true);

    // Again: nothing to send, the revision is there.
    const again = await copyAll(source, target);
    expect(again).toEqual([
      { uuid: first.uuid, status: 'present', chunksSent: 0, chunksPresent: 0, bytesSent: 0, bytesStored: 0 },
    ]);

    // An incremental backup changed two chunks: the copy sends exactly those two.
    const v2 = Buffer.from(v1);
    randomBytes(10).copy(v2, 1 * CHUNK + 7);
    randomBytes(10).copy(v2, 3 * CHUNK + 99);
    const second = await backupOf(source, v2);
    const results = await copyAll(source, target);
    expect(results.map((r) => [r.uuid, r.status, r.chunksSent, r.chunksPresent])).toEqual([
      [first.uuid, 'present', 0, 0],
      [second.uuid, 'copied', 2, 4],
    ]);
    expect(results[1]!.bytesSent).toBe(2 * CHUNK);
    expect((await restoreToBuffer(target, second.uuid)).equals(v2)).toBe(true);
    expect((await restoreToBuffer(target, first.uuid)).equals(v1)).toBe(true);
    expect((await target.revisions()).map((r) => r.uuid)).toEqual([first.uuid, second.uuid]);
  });

  it('reports as bytesStored what the target store holds of the chunks it was sent', async () => {
    const source = await archiveAt('source');
    const target = await archiveAt('target');
    const first = await backupOf(source, image());
    const [copied] = await copyAll(source, target, [first]);
    // Chunk files (named by 64 hex digits) in the target's store: every one of them was sent.
    let stored = 0;
    for (const entry of await readdir(join(target.path, 'chunks'), { recursive: true, withFileTypes: true }))
      if (entry.isFile() && /^[0-9a-f]{64}$/.test(entry.name))
        stored += (await stat(join(entry.parentPath, entry.name))).size;
    expect(copied!.chunksSent).toBe(6);
    // Random data does not compress: the store holds at least what was sent.
    expect(stored).toBeGreaterThan(copied!.bytesSent);
    expect(copied!.bytesStored).toBe(stored);
  });

  it('copies the oldest first and counts chunks shared between the copied revisions once', async () => {
    const source = await archiveAt('source');
    const target = await archiveAt('target');
    const v1 = image();
    const first = await backupOf(source, v1);
    const v2 = Buffer.from(v1);
    randomBytes(10).copy(v2, 2 * CHUNK);
    const second = await backupOf(source, v2);
    const results = await copyAll(source, target, [second, first]);
    expect(results.map((r) => [r.uuid, r.chunksSent, r.chunksPresent])).toEqual([
      [first.uuid, 6, 0],
      [second.uuid, 1, 5],
    ]);
  });

  it('writes a chunk again when its read-back differs, and fails when the target keeps damaging it', async () => {
    const source = await archiveAt('source');
    const target = await archiveAt('target');
    const data = image();
    const rev = await backupOf(source, data);
    const store = target.store;
    const put = store.put.bind(store);
    let damaged = 0;
    // The first write of one chunk lands damaged: the copy notices and writes it anew.
    store.put = async (hash, chunk, options) => {
      if (damaged === 0 && options?.rewrite !== true) {
        damaged++;
        const bad = Buffer.from(chunk);
        bad[0] = bad[0]! ^ 0xff;
        return put(hash, bad, { rewrite: true });
      }
      return put(hash, chunk, options);
    };
    const [copied] = await copyAll(source, target);
    expect(damaged).toBe(1);
    expect(copied!.chunksSent).toBe(6);
    expect((await restoreToBuffer(target, rev.uuid)).equals(data)).toBe(true);

    // A store that damages every write: an error, and the revision is not committed.
    const other = await archiveAt('other');
    const otherPut = other.store.put.bind(other.store);
    other.store.put = async (hash, chunk) => {
      const bad = Buffer.from(chunk);
      bad[0] = bad[0]! ^ 0xff;
      return otherPut(hash, bad, { rewrite: true });
    };
    const error = await copyAll(source, other).catch((e: unknown) => e);
    expect(isBackyError(error, 'CHUNK_CORRUPT')).toBe(true);
    expect((error as Error).message).toMatch(/does not keep it intact/);
    expect(await other.revisions()).toEqual([]);
    expect((await readdir(other.path)).filter((f) => /\.(rev|map|pending)$/.test(f))).toEqual([]);
  });

  it('leaves nothing visible when a copy is interrupted, and the next copy cleans up and completes', async () => {
    const source = await archiveAt('source');
    const target = await archiveAt('target');
    const data = image();
    const rev = await backupOf(source, data);
    const controller = new AbortController();
    const store = target.store;
    const put = store.put.bind(store);
    let puts = 0;
    store.put = async (hash, chunk, options) => {
      if (++puts === 3) controller.abort();
      return put(hash, chunk, options);
    };
    const error = await copyRevisions(source, target, [rev], {
      logger: silent,
      signal: controller.signal,
      concurrency: 1,
    }).catch((e: unknown) => e);
    expect(isBackyError(error, 'ABORTED')).toBe(true);
    expect(await target.revisions()).toEqual([]);
    // A crash (no clean-up at all) leaves a marker and a map without a `.rev`: not a revision.
    await target.begin(rev.uuid);
    await writeFile(mapPath(target.path, rev.uuid), 'partial');
    expect((await target.scan()).interrupted).toEqual([rev.uuid]);
    store.put = put;
    const [copied] = await copyAll(source, target);
    // Chunks the interrupted copy wrote are not sent again.
    expect(copied!.chunksSent).toBeLessThan(6);
    expect(copied!.chunksSent + copied!.chunksPresent).toBe(6);
    expect((await restoreToBuffer(target, rev.uuid)).equals(data)).toBe(true);
    expect((await target.scan()).interrupted).toEqual([]);
  });

  it('refuses revisions that are not chunked, before copying anything, and a target that is the source', async () => {
    const source = await archiveAt('source', { layout: 'images' });
    const target = await archiveAt('target');
    const rev = await backupOf(source, image());
    const error = await copyAll(source, target).catch((e: unknown) => e);
    expect(isBackyError(error, 'USAGE')).toBe(true);
    expect((error as Error).message).toBe(
      `copy: revision ${rev.uuid} is in the images format; only revisions of layout chunked can be copied (nothing was copied)`,
    );
    expect(await target.revisions()).toEqual([]);
    const self = await copyAll(target, await Archive.open(target.path)).catch((e: unknown) => e);
    expect(isBackyError(self, 'USAGE')).toBe(true);
  });

  it('fails on a damaged chunk of the source and commits nothing of that revision', async () => {
    const source = await archiveAt('source');
    const target = await archiveAt('target');
    await backupOf(source, image());
    const store = source.store;
    const get = store.getPooled.bind(store);
    let gets = 0;
    store.getPooled = async (hash, algorithm, options) => {
      if (++gets === 2) throw new BackyError('CHUNK_CORRUPT', `chunk ${hash} is damaged`);
      return get(hash, algorithm, options);
    };
    const error = await copyAll(source, target).catch((e: unknown) => e);
    expect(isBackyError(error, 'CHUNK_CORRUPT')).toBe(true);
    expect(await target.revisions()).toEqual([]);
  });

  it('copies between encrypted stores with the same key, and refuses a target that names chunks differently', async () => {
    for (const name of ['a.key', 'b.key']) await writeKeyFile(join(dir.path, name), await newKeyFile(null));
    const encrypted = (name: string, key: string) =>
      archiveAt(name, { store: { encryption: { 'key-file': `../${key}` } } });
    const source = await encrypted('source', 'a.key');
    const v1 = image();
    await backupOf(source, v1);
    const sameKey = await encrypted('same-key', 'a.key');
    const [copied] = await copyAll(source, sameKey);
    expect(copied).toMatchObject({ status: 'copied', chunksSent: 6 });
    expect((await restoreToBuffer(sameKey, copied!.uuid)).equals(v1)).toBe(true);
    for (const target of [await encrypted('other-key', 'b.key'), await archiveAt('plain')]) {
      const error = await copyAll(source, target).catch((e: unknown) => e);
      expect(isBackyError(error, 'USAGE')).toBe(true);
      expect((error as Error).message).toMatch(/names chunks differently from the source/);
      expect(await target.revisions()).toEqual([]);
    }
    // And the other way round: a plain source into an encrypted target.
    const plain = await archiveAt('plain-source');
    await backupOf(plain, v1);
    expect(isBackyError(await copyAll(plain, sameKey).catch((e: unknown) => e), 'USAGE')).toBe(true);
  });
});
