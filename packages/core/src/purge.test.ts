// Purge and the registry of a shared store (`<store>/.archives/`): whatever purge cannot read or reach
// stops it before it deletes anything, since the chunks of an archive it cannot see would count for
// nothing.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, rmdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Archive } from './archive/index.js';
import { runBackup } from './backup.js';
import { purgeStore } from './purge.js';
import { DirectoryChunkStore } from './repository/chunk-store.js';
import type { ChunkStore } from './store/contract.js';
import { bufferSource, MiB, silent } from './test-helpers.js';
import { restoreToBuffer, tempDir } from './testing/helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

/** Two archives sharing a store, each with one revision; A then forgets its own, so purge has work. */
async function twoArchives() {
  const store = join(dir.path, 'store');
  const make = async (name: string) => {
    const archive = await Archive.init(join(dir.path, name), {
      source: { type: 'test' },
      store: { type: 'directory', path: store },
    });
    const data = randomBytes(6 * MiB);
    const rev = await runBackup(
      archive,
      bufferSource(() => data),
      { tags: ['daily'], logger: silent },
    );
    return { archive, data, rev };
  };
  const a = await make('a');
  const b = await make('b');
  const gone = await runBackup(
    a.archive,
    bufferSource(() => randomBytes(2 * MiB)),
    { tags: ['daily'], logger: silent },
  );
  await a.archive.deleteRevision(gone.uuid);
  const registry = join(store, '.archives');
  const entryOf = async (archive: Archive) => {
    const id = (await readFile(join(archive.path, 'archive-id'), 'utf8')).trim();
    return join(registry, (await readdir(registry)).find((n) => n.startsWith(`${id}.`))!);
  };
  return { store, registry, a, b, entryOfB: await entryOf(b.archive) };
}

async function chunkCount(store: string): Promise<number> {
  let n = 0;
  for (const fan of await readdir(store)) {
    if (/^[0-9a-f]{2}$/.test(fan)) n += (await readdir(join(store, fan))).length;
  }
  return n;
}

async function expectRestores(...archives: { archive: Archive; data: Buffer; rev: { uuid: string } }[]) {
  for (const { archive, data, rev } of archives)
    expect((await restoreToBuffer(archive, rev.uuid)).equals(data)).toBe(true);
}

describe('purge and the registry of a shared store', () => {
  it.each([
    ['an empty entry', async (entry: string) => writeFile(entry, ''), /is empty/],
    ['a blank entry', async (entry: string) => writeFile(entry, '\n \n'), /is empty/],
    [
      'a relative path',
      async (entry: string) => writeFile(entry, 'b\n'),
      /does not hold one absolute archive path/,
    ],
    [
      'a truncated path',
      async (entry: string) => writeFile(entry, `${(await readFile(entry, 'utf8')).trim().slice(0, -1)}\n`),
      /which is not the path it was registered with/,
    ],
  ])('stops on %s in the registry, deletes nothing, and names the entry', async (_what, damage, reason) => {
    const { store, a, b, entryOfB } = await twoArchives();
    await damage(entryOfB);
    const before = await chunkCount(store);
    const error = await purgeStore(a.archive.store, { logger: silent, archiveDir: a.archive.path }).then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).toMatch(/^purge stopped, nothing deleted: registry entry /);
    expect(error?.message).toContain(entryOfB);
    expect(error?.message).toMatch(reason);
    expect(error?.message).not.toContain('\n');
    expect(await chunkCount(store)).toBe(before);
    await expectRestores(a, b);
  });

  it('stops on a registry entry it cannot read', async () => {
    const { store, a, b, entryOfB } = await twoArchives();
    // A directory where the entry should be: unreadable as a file even for root (EISDIR).
    const text = await readFile(entryOfB, 'utf8');
    await rm(entryOfB);
    await mkdir(entryOfB);
    const before = await chunkCount(store);
    await expect(purgeStore(a.archive.store, { logger: silent })).rejects.toThrow(
      new RegExp(`^purge stopped, nothing deleted: reading registry entry ${entryOfB}: EISDIR`),
    );
    await rmdir(entryOfB);
    await writeFile(entryOfB, text);
    expect(await chunkCount(store)).toBe(before);
    await expectRestores(a, b);
  });

  it('stops on an archive directory it cannot reach', async () => {
    const { store, a, b } = await twoArchives();
    // A symlink loop where the archive was: stat fails with ELOOP, for root too.
    const aside = `${b.archive.path}.aside`;
    await rename(b.archive.path, aside);
    await symlink(b.archive.path, b.archive.path);
    const before = await chunkCount(store);
    try {
      await expect(purgeStore(a.archive.store, { logger: silent })).rejects.toThrow(
        new RegExp(`^purge stopped, nothing deleted: reading archive ${b.archive.path}: ELOOP`),
      );
    } finally {
      await rm(b.archive.path);
      await rename(aside, b.archive.path);
    }
    expect(await chunkCount(store)).toBe(before);
    await expectRestores(a, b);
  });

  it('treats a missing registry in a store that holds chunks as an error, not as "no archives"', async () => {
    const { store, registry, a, b } = await twoArchives();
    await rename(registry, join(dir.path, 'registry-aside'));
    const before = await chunkCount(store);
    await expect(purgeStore(a.archive.store, { logger: silent })).rejects.toThrow(
      /^purge stopped, nothing deleted: chunk store .* holds chunks but its registry of archives \(\.archives\/\) is missing/,
    );
    expect(await chunkCount(store)).toBe(before);
    // A store with no chunks and no registry yet (no backup has run) is nothing to purge.
    await rm(store, { recursive: true });
    expect((await purgeStore(a.archive.store, { logger: silent })).chunksDeleted).toBe(0);
    void b;
  });

  it('still purges what no archive references when the registry is sound', async () => {
    const { store, a, b } = await twoArchives();
    const before = await chunkCount(store);
    const result = await purgeStore(a.archive.store, { logger: silent, archiveDir: a.archive.path });
    expect(result.chunksDeleted).toBeGreaterThan(0);
    expect(result.archives).toBe(2);
    expect(await chunkCount(store)).toBe(before - result.chunksDeleted);
    await expectRestores(a, b);
  });

  it('sums up what the store keeps for its stats, each revision once', async () => {
    const { store, a, b } = await twoArchives();
    const result = await purgeStore(a.archive.store, { logger: silent, archiveDir: a.archive.path });
    let bytes = 0;
    for (const fan of (await readdir(store)).filter((n) => /^[0-9a-f]{2}$/.test(n)))
      for (const name of await readdir(join(store, fan))) bytes += (await stat(join(store, fan, name))).size;
    // Each archive's one revision: 6 MiB of random data, a 4 MiB and a 2 MiB chunk.
    expect(result.chunksKept).toBe(await chunkCount(store));
    expect(result.chunksKept).toBe(4);
    expect(result.bytesKept).toBe(bytes);
    expect([result.referencedBytes, result.revisions]).toEqual([12 * MiB, 2]);
    // A store that keeps the revisions (as S3 does) has A's map in its catalog as well as A's directory.
    const catalog = {
      list: async () => new Map([[a.rev.uuid, 'v']]),
      read: (id: string, kind: string) => readFile(join(a.archive.path, `${id}.${kind}`)).catch(() => null),
    };
    const withCatalog = Object.assign(Object.create(a.archive.store) as ChunkStore, { catalog });
    const again = await purgeStore(withCatalog, { logger: silent, archiveDir: a.archive.path });
    expect([again.referencedBytes, again.revisions, again.chunksKept]).toEqual([12 * MiB, 2, 4]);
    await expectRestores(a, b);
  });

  it("counts the archive it runs for even when that archive's own entry is gone", async () => {
    const { store, registry, a, b } = await twoArchives();
    const id = (await readFile(join(a.archive.path, 'archive-id'), 'utf8')).trim();
    for (const name of await readdir(registry)) if (name.startsWith(`${id}.`)) await rm(join(registry, name));
    const result = await purgeStore(a.archive.store, { logger: silent, archiveDir: a.archive.path });
    expect(result.chunksDeleted).toBeGreaterThan(0);
    expect(await chunkCount(store)).toBeGreaterThan(0);
    await expectRestores(a, b);
  });

  it("stops on a chunked revision in a remote store's catalog whose map is missing", async () => {
    // A store that keeps the revisions (as S3 does): a directory store with a catalog of plain files.
    const root = join(dir.path, 'remote');
    const inner = new DirectoryChunkStore(join(root, 'chunks'));
    await inner.init();
    const hash = '00'.repeat(32);
    await mkdir(join(root, 'chunks', '00'), { recursive: true });
    await writeFile(join(root, 'chunks', '00', hash), 'an unreferenced chunk');
    const files = join(root, 'revisions');
    await mkdir(files);
    const catalog = {
      list: async () =>
        new Map(
          (await readdir(files)).filter((n) => n.endsWith('.rev')).map((n) => [n.slice(0, -4), 'v'] as const),
        ),
      read: (id: string, kind: string) => readFile(join(files, `${id}.${kind}`)).catch(() => null),
    };
    const store = Object.assign(Object.create(inner) as ChunkStore, { catalog });
    await writeFile(join(files, 'R1.rev'), 'uuid: R1\nbackend_type: chunked\n');
    await expect(purgeStore(store, { logger: silent })).rejects.toThrow(
      /^purge stopped, nothing deleted: revision R1 in the store has no map/,
    );
    expect(await readdir(join(root, 'chunks', '00'))).toEqual([hash]);
    // A revision of another layout has no map in the store: nothing to count, purge goes on.
    await writeFile(join(files, 'R1.rev'), 'uuid: R1\nbackend_type: cowfile\n');
    expect((await purgeStore(store, { logger: silent })).chunksDeleted).toBe(1);
  });
});
