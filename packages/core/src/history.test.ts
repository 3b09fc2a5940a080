// Never lose history: the four data-loss paths found by an adversarial operator, each reproduced and
// held (see docs/storage.md for the files, the write order and the lock table).
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Archive, RevisionTransaction, scanRevisionFacts } from './archive/index.js';
import { lastLinks } from './archive/links.js';
import { mapPath, revPath } from './archive/paths.js';
import { runBackup } from './backup.js';
import { isBackyError } from './errors.js';
import { expireArchive } from './expire.js';
import { forgetArchive, purgeStore } from './purge.js';
import { forEachChunk } from './revision-stream.js';
import type { BackupSource } from './source/contract.js';
import { ChunkMap } from './store/chunk-map.js';
import { bufferSource, MiB, makeArchive, silent } from './test-helpers.js';
import { restoreToBuffer, tempDir } from './testing/helpers.js';
import { verifyRevisions } from './verify.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

const image = (seed = 0) => {
  const data = Buffer.alloc(12 * MiB + 99);
  randomBytes(6 * MiB).copy(data, 0);
  data.fill(seed + 1, 9 * MiB, 10 * MiB);
  return data;
};

/** bufferSource with a full verification through `checkChunk`, like the file source's. */
function verifyingSource(getData: () => Buffer): BackupSource {
  const plain = bufferSource(getData);
  return {
    backup: plain.backup,
    async verify(ctx) {
      const data = getData();
      const mismatches: number[] = [];
      await forEachChunk(ctx.reader.chunkCount, 2, async (index) => {
        const start = index * ctx.reader.chunkSize;
        const chunk = Buffer.from(data.subarray(start, start + ctx.reader.chunkLength(index)));
        if (!(await ctx.checkChunk(index, chunk))) mismatches.push(index);
      });
      const n = ctx.reader.chunkCount;
      return { method: 'full', chunks_checked: n, chunks_total: n, ok: mismatches.length === 0, mismatches };
    },
  };
}

const backup = (archive: Archive, data: Buffer, tags = ['daily']) =>
  runBackup(
    archive,
    verifyingSource(() => data),
    { tags, logger: silent },
  );

const restored = restoreToBuffer;

async function chunkFiles(archive: Archive): Promise<string[]> {
  const out: string[] = [];
  for await (const e of archive.store.entries()) if (e.hash != null) out.push(e.path);
  return out;
}

describe('a moved archive', () => {
  it('keeps its chunks through purge (its ID is found at the new path)', async () => {
    const a1 = await makeArchive(dir.path);
    const data = image();
    await backup(a1, data);
    const before = (await chunkFiles(a1)).length;
    expect(before).toBeGreaterThan(0);
    await rename(a1.path, join(dir.path, 'moved'));
    const a2 = await Archive.open(join(dir.path, 'moved'));
    await a2.refreshRegistration(); // what every CLI command does on opening an archive
    const result = await purgeStore(a2.store, { logger: silent });
    expect(result.chunksDeleted).toBe(0);
    expect(result.staleEntries).toEqual([a1.path]);
    expect((await restored(a2, 'last')).equals(data)).toBe(true);
    expect((await a2.store.registeredArchives()).map((e) => e.path)).toEqual([a2.path]);
  });

  it('in a shared store stops purge, naming it, until it is used again or forgotten', async () => {
    const store = join(dir.path, 'shared');
    const a = await Archive.init(join(dir.path, 'a'), { source: { type: 'test' }, store: { path: store } });
    const b = await Archive.init(join(dir.path, 'b'), { source: { type: 'test' }, store: { path: store } });
    const onlyB = image(7);
    const dataA = image(1);
    await backup(a, dataA);
    await backup(b, onlyB);
    await rename(b.path, join(dir.path, 'b-moved'));
    const chunks = (await chunkFiles(a)).length;
    const error = await purgeStore(a.store, { logger: silent }).catch((e) => e);
    expect(isBackyError(error, 'ARCHIVE_NOT_FOUND')).toBe(true);
    expect(error.message).toContain(`archive ${b.path}`);
    expect(error.message).toContain('nothing deleted');
    expect(error.message).toContain('--forget-archive');
    expect((await chunkFiles(a)).length).toBe(chunks);
    // Used at its new place: registered there, and the stale entry goes.
    const moved = await Archive.open(join(dir.path, 'b-moved'));
    await moved.refreshRegistration();
    expect((await purgeStore(a.store, { logger: silent })).chunksDeleted).toBe(0);
    expect((await restored(moved, 'last')).equals(onlyB)).toBe(true);
    // Gone for good: only an explicit command makes purge free its chunks.
    await rm(moved.path, { recursive: true });
    await expect(purgeStore(a.store, { logger: silent })).rejects.toThrow(
      /b-moved, a user of chunk store .* is missing/,
    );
    await expect(forgetArchive(a.store, a.path)).rejects.toThrow(/still there/);
    expect(await forgetArchive(a.store, moved.path)).toBe(1);
    expect((await purgeStore(a.store, { logger: silent })).chunksDeleted).toBeGreaterThan(0);
    expect((await restored(a, 'last')).equals(dataA)).toBe(true);
  });
});

describe('a .rev backy cannot read', () => {
  for (const [what, text] of [
    ['garbage', 'garbage: ['],
    ['empty', ''],
    ['truncated', 'uuid: X\ntimesta'],
    ['hand-edited trust', null],
    ['a dangling symlink', 'symlink'],
  ] as const) {
    it(`(${what}) is shown as damaged and never deleted, and its chunks stay referenced`, async () => {
      const archive = await makeArchive(dir.path);
      const v1 = image(1);
      const r1 = await backup(archive, v1);
      const r2 = await backup(archive, image(2));
      const revText = await readFile(revPath(archive.path, r1.uuid), 'utf8');
      if (text === 'symlink') {
        // Unreadable (ENOENT) like a revision forgotten meanwhile, but there: damaged, not passed over.
        await rm(revPath(archive.path, r1.uuid));
        await symlink('nowhere', revPath(archive.path, r1.uuid));
      } else
        await writeFile(
          revPath(archive.path, r1.uuid),
          text ?? revText.replace('trust: trusted', 'trust: Trusted'),
        );
      const scan = await archive.scan();
      expect(scan.complete.map((r) => r.uuid)).toEqual([r2.uuid]);
      expect(scan.damaged.map((d) => d.id)).toEqual([r1.uuid]);
      // What the scheduler and `backy check` read (revision-facts.ts).
      expect((await scanRevisionFacts(archive.path)).damaged).toEqual([`${r1.uuid}.rev`]);
      expect(Archive.describeScan(scan)[0]).toMatch(
        new RegExp(`damaged revision ${r1.uuid}: .*${r1.uuid}\\.rev: `),
      );
      const map = await readFile(mapPath(archive.path, r1.uuid));
      // Changing the image so that r1's chunks are referenced by its map alone.
      await backup(archive, image(3));
      await expireArchive(archive, { logger: silent });
      await purgeStore(archive.store, { logger: silent });
      expect((await readFile(mapPath(archive.path, r1.uuid))).equals(map)).toBe(true);
      // Repaired by hand, it restores: nothing it needs was deleted.
      await rm(revPath(archive.path, r1.uuid));
      await writeFile(revPath(archive.path, r1.uuid), revText);
      expect((await restored(archive, r1.uuid)).equals(v1)).toBe(true);
    });
  }
});

describe('revision files under the revisions lock', () => {
  it('verify does not bring back a revision forgotten while it runs, nor undo tags set meanwhile', async () => {
    const archive = await makeArchive(dir.path);
    const r1 = await backup(archive, image(1));
    const r2 = await backup(archive, image(2));
    const r3 = await backup(archive, image(3));
    let once = false;
    const meanwhile: Promise<unknown>[] = [];
    const results = await verifyRevisions(archive, [r1, r2, r3], {
      logger: silent,
      onProgress: () => {
        if (once) return;
        once = true;
        // While verify reads r1: forget r2 and tag r3 (what `forget` and `tags` do).
        meanwhile.push(archive.deleteRevision(r2.uuid));
        meanwhile.push(archive.updateRevision(r3.uuid, (r) => ({ ...r, tags: [...r.tags, 'manual:keep'] })));
      },
    });
    await Promise.all(meanwhile);
    expect(results.map((r) => [r.uuid, r.ok, r.gone ?? false])).toEqual([
      [r1.uuid, true, false],
      [r2.uuid, false, true],
      [r3.uuid, true, false],
    ]);
    const after = await archive.revisions();
    expect(after.map((r) => r.uuid)).toEqual([r1.uuid, r3.uuid]);
    expect(after[1]!.tags).toEqual(['daily', 'manual:keep']);
    expect(after.map((r) => r.trust)).toEqual(['verified', 'verified']);
    expect((await readdir(archive.path)).filter((f) => f.startsWith(r2.uuid))).toEqual([]);
  });

  it('verify goes on past a damaged map, and the next backup builds on the newest intact revision', async () => {
    const archive = await makeArchive(dir.path);
    const v1 = image(1);
    const r1 = await backup(archive, v1);
    const r2 = await backup(archive, image(2));
    await writeFile(mapPath(archive.path, r2.uuid), 'not a map');
    const results = await verifyRevisions(archive, [r1, r2], { logger: silent });
    expect(results[0]!.ok).toBe(true);
    expect(results[1]!.ok).toBe(false);
    expect(results[1]!.problem).toBeTruthy();
    const v3 = image(3);
    const r3 = await backup(archive, v3);
    expect(r3.trust).toBe('trusted');
    expect((await restored(archive, 'last')).equals(v3)).toBe(true);
    expect((await restored(archive, r1.uuid)).equals(v1)).toBe(true);
  });
});

describe('a failure after the commit', () => {
  it('keeps the committed revision: its map and chunks stay, it restores, purge keeps them', async () => {
    const archive = await makeArchive(dir.path);
    const v1 = image(1);
    const link = lastLinks.update.bind(lastLinks);
    // The `last` links fail once the new `.rev` is there (e.g. the disk filled up just then).
    const spy = vi.spyOn(lastLinks, 'update').mockImplementation(async (dir, newest) => {
      if (newest != null)
        throw Object.assign(new Error('ENOSPC: no space left on device, symlink'), { code: 'ENOSPC' });
      return link(dir, newest);
    });
    let r1: Awaited<ReturnType<typeof backup>>;
    try {
      r1 = await backup(archive, v1);
    } finally {
      spy.mockRestore();
    }
    expect(r1.trust).toBe('trusted');
    expect((await archive.revisions()).map((r) => r.uuid)).toEqual([r1.uuid]);
    expect((await archive.loadMap(r1)).size).toBe(v1.length);
    expect((await chunkFiles(archive)).length).toBeGreaterThan(0);
    expect((await purgeStore(archive.store, { logger: silent })).chunksDeleted).toBe(0);
    expect((await restored(archive, r1.uuid)).equals(v1)).toBe(true);
    // The next backup builds on it and leaves no marker behind.
    const v2 = image(2);
    const r2 = await backup(archive, v2);
    expect(r2.parent).toBe(r1.uuid);
    expect((await readdir(archive.path)).filter((n) => n.endsWith('.pending'))).toEqual([]);
    expect((await restored(archive, r2.uuid)).equals(v2)).toBe(true);
  });
});

describe('a commit that cannot tell whether it happened', () => {
  it('fails the backup but removes nothing; the next backup decides by the .rev it finds', async () => {
    const archive = await makeArchive(dir.path);
    const v1 = image(1);
    const r1 = await backup(archive, v1);
    const before = (await chunkFiles(archive)).length;
    // What a commit throws when the `.rev` write failed and its `lstat` fails too (e.g. EIO).
    const spy = vi.spyOn(RevisionTransaction.prototype, 'commit').mockRejectedValue(
      Object.assign(new Error('revision X may or may not have been committed (EIO)'), {
        commitUncertain: true,
      }),
    );
    let error: unknown;
    try {
      error = await backup(archive, image(2)).catch((e) => e);
    } finally {
      spy.mockRestore();
    }
    expect((error as Error).message).toMatch(/may or may not have been committed/);
    const names = await readdir(archive.path);
    const pending = names.filter((n) => n.endsWith('.pending'));
    expect(pending).toHaveLength(1);
    const id = pending[0]!.slice(0, -'.pending'.length);
    // Its map and its fresh chunks are all still there.
    expect(names).toContain(`${id}.map`);
    expect((await chunkFiles(archive)).length).toBeGreaterThan(before);
    // No `.rev` after all: the next backup's clean-up removes the interrupted backup's files.
    const v3 = image(3);
    const r3 = await backup(archive, v3);
    expect((await readdir(archive.path)).filter((n) => n.startsWith(id))).toEqual([]);
    expect((await archive.revisions()).map((r) => r.uuid)).toEqual([r1.uuid, r3.uuid]);
    expect((await restored(archive, r1.uuid)).equals(v1)).toBe(true);
    expect((await restored(archive, r3.uuid)).equals(v3)).toBe(true);
  });
});

describe('purge beside forget', () => {
  it('passes over a map forgotten while it reads the archive; a damaged map still stops it', async () => {
    const archive = await makeArchive(dir.path);
    const v1 = image(1);
    const r1 = await backup(archive, v1);
    const r2 = await backup(archive, image(2));
    const ofR1 = new Set((await archive.loadMap(r1)).uniqueHashes());
    const onlyR2 = [...(await archive.loadMap(r2)).uniqueHashes()].filter((h) => !ofR1.has(h));
    expect(onlyR2.length).toBeGreaterThan(0);
    const load = ChunkMap.load.bind(ChunkMap);
    const spy = vi.spyOn(ChunkMap, 'load').mockImplementation(async (path) => {
      // What `backy forget` in another process does between purge's listing and its reading of r2's map.
      if (path === mapPath(archive.path, r2.uuid)) await archive.deleteRevision(r2.uuid);
      return load(path);
    });
    try {
      const result = await purgeStore(archive.store, { logger: silent });
      // r2's own chunks went; everything r1 needs stayed.
      expect(result.chunksDeleted).toBe(onlyR2.length);
    } finally {
      spy.mockRestore();
    }
    expect((await archive.revisions()).map((r) => r.uuid)).toEqual([r1.uuid]);
    expect((await restored(archive, r1.uuid)).equals(v1)).toBe(true);
    // A map that is there but cannot be read, or gone while its `.rev` is still there, is no proof of
    // anything: nothing is deleted.
    const r3 = await backup(archive, image(3));
    const lost = vi.spyOn(ChunkMap, 'load').mockImplementation(async (path) => {
      if (path === mapPath(archive.path, r3.uuid)) await rm(path);
      return load(path);
    });
    const before = (await chunkFiles(archive)).length;
    try {
      await expect(purgeStore(archive.store, { logger: silent })).rejects.toThrow(
        /^purge stopped, nothing deleted: chunk map .* cannot be read: ENOENT/,
      );
    } finally {
      lost.mockRestore();
    }
    expect((await chunkFiles(archive)).length).toBe(before);
    await backup(archive, image(3));
    const chunks = (await chunkFiles(archive)).length;
    await writeFile(mapPath(archive.path, r1.uuid), 'not a map');
    await expect(purgeStore(archive.store, { logger: silent })).rejects.toThrow(
      /^purge stopped, nothing deleted: /,
    );
    expect((await chunkFiles(archive)).length).toBe(chunks);
  });
});

describe('a backup reuses only chunks that exist and are intact', () => {
  it('writes a missing chunk anew', async () => {
    const archive = await makeArchive(dir.path);
    const data = image(1);
    await backup(archive, data);
    const files = await chunkFiles(archive);
    await rm(files[0]!);
    const r2 = await backup(archive, data);
    expect(r2.trust).toBe('trusted');
    expect(r2.stats.chunks_written).toBeGreaterThan(0);
    expect((await chunkFiles(archive)).length).toBe(files.length);
    expect((await restored(archive, 'last')).equals(data)).toBe(true);
    expect((await restored(archive, '1')).equals(data)).toBe(true); // the older revision healed too
  });

  it('catches a damaged reused chunk, never commits it as trusted, and heals it with the next backup', async () => {
    const archive = await makeArchive(dir.path);
    const data = image(1);
    const r1 = await backup(archive, data);
    const files = await chunkFiles(archive);
    const file = await readFile(files[0]!);
    file[file.length - 1] = file[file.length - 1]! ^ 0xff;
    await rm(files[0]!);
    await writeFile(files[0]!, file);
    const r2 = await backup(archive, data);
    expect(r2.trust).toBe('distrusted');
    expect(r2.verification?.ok).toBe(false);
    // Never chosen by `last`, an index or a tag: the newest good revision is.
    expect((await archive.resolveOne('last')).uuid).toBe(r1.uuid);
    expect((await archive.resolveOne('daily')).uuid).toBe(r1.uuid);
    expect((await archive.resolveOne(r2.uuid)).uuid).toBe(r2.uuid);
    const r3 = await backup(archive, data);
    expect(r3.trust).toBe('trusted');
    expect(r3.parent).toBe(r1.uuid);
    expect((await restored(archive, 'last')).equals(data)).toBe(true);
    expect((await restored(archive, r1.uuid)).equals(data)).toBe(true);
  });

  it('moves a chunk that a read found damaged aside, so the next backup writes it again', async () => {
    const archive = await makeArchive(dir.path);
    const data = image(1);
    const r1 = await backupOfPlain(archive, data);
    const files = await chunkFiles(archive);
    await writeFile(files[0]!, Buffer.concat([await readFile(files[0]!), Buffer.from('x')]));
    const [result] = await verifyRevisions(archive, [r1], { logger: silent });
    expect(result!.ok).toBe(false);
    expect((await readdir(join(files[0]!, '..'))).some((n) => n.endsWith('.damaged'))).toBe(true);
    const r2 = await backupOfPlain(archive, data);
    expect(r2.stats.chunks_written).toBeGreaterThan(0);
    expect((await restored(archive, 'last')).equals(data)).toBe(true);
  });
});

const backupOfPlain = (archive: Archive, data: Buffer) =>
  runBackup(
    archive,
    bufferSource(() => data),
    { tags: ['daily'], logger: silent },
  );
