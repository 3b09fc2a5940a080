import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Archive } from './archive/index.js';
import { mapPath, revPath } from './archive/paths.js';
import { chunkChecker, runBackup } from './backup.js';
import { BackyError as BackyErrorClass, isBackyError } from './errors.js';
import { expireArchive } from './expire.js';
import { purgeStore } from './purge.js';
import type { DirectoryChunkStore } from './repository/chunk-store.js';
import { restoreToPath } from './restore.js';
import { sha256Hex } from './store/chunk-hash.js';
import { ChunkMap } from './store/chunk-map.js';
import { backupOf, bufferSource, MiB, makeArchive, silent, writeAt } from './test-helpers.js';
import { restoreToBuffer, tempDir } from './testing/helpers.js';
import { verifyRevisions } from './verify.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

const image = () => {
  const data = Buffer.alloc(10 * MiB + 4321);
  randomBytes(3 * MiB).copy(data, 0);
  Buffer.from('text '.repeat(200_000)).copy(data, 5 * MiB);
  return data;
};

/** One backup of `data` tagged daily. */
const restoreBytes = restoreToBuffer;

describe('backup', () => {
  it('writes only changed chunks, stores no zero chunks, and keeps every revision restorable', async () => {
    const archive = await makeArchive(dir.path);
    let data = image();
    const first = await backupOf(archive, data);
    expect(first.stats.chunks_zero).toBe(1); // 8–12 MiB is all zero
    expect(first.stats.chunks_written).toBe(2);
    const v1 = Buffer.from(data);
    data = Buffer.from(data);
    data[9 * MiB] = 7;
    const second = await backupOf(archive, data);
    expect(second.parent).toBe(first.uuid);
    expect(second.stats.chunks_written).toBe(1); // chunk 2 was zero, now has data
    expect(second.stats.chunks_reused).toBe(2);
    expect((await restoreBytes(archive, first.uuid)).equals(v1)).toBe(true);
    expect((await restoreBytes(archive, 'last')).equals(data)).toBe(true);
    const files = await readdir(archive.path);
    expect(files.filter((f) => f.endsWith('.rev'))).toHaveLength(2);
  });

  it('removes what a crashed backup provably left, and keeps what it does not understand', async () => {
    const archive = await makeArchive(dir.path);
    const data = image();
    const good = await backupOf(archive, data);
    // A crash after the map but before the .rev (the backup's marker is there), a map nobody claims,
    // a .rev without stats, and a stray temp file.
    await copyFile(mapPath(archive.path, good.uuid), mapPath(archive.path, 'CrashedRevision0000001'));
    await writeFile(join(archive.path, 'CrashedRevision0000001.pending'), '1\n');
    await copyFile(mapPath(archive.path, good.uuid), mapPath(archive.path, 'UnknownRevision0000003'));
    await writeFile(
      revPath(archive.path, 'CrashedRevision0000002'),
      'uuid: CrashedRevision0000002\ntimestamp: 2026-01-01T00:00:00Z\n',
    );
    await writeFile(join(archive.path, '.x.rev.abcd.tmp'), 'partial');
    expect((await archive.revisions()).map((r) => r.uuid)).toEqual([good.uuid]);
    const scan = await archive.scan();
    expect(scan.interrupted).toEqual(['CrashedRevision0000001']);
    expect(scan.orphans).toEqual(['UnknownRevision0000003.map']);
    expect(scan.damaged.map((d) => [d.id, d.problem])).toEqual([
      ['CrashedRevision0000002', 'it has no stats (not a complete revision)'],
    ]);
    await backupOf(archive, data);
    const files = await readdir(archive.path);
    expect(files.filter((f) => f.startsWith('CrashedRevision0000001') || f.endsWith('.tmp'))).toEqual([]);
    expect(files).toContain('UnknownRevision0000003.map');
    expect(files).toContain('CrashedRevision0000002.rev');
    expect(files.filter((f) => f.endsWith('.pending'))).toEqual([]);
    expect(await archive.revisions()).toHaveLength(2);
  });

  it('leaves nothing visible when the source fails mid-way', async () => {
    const archive = await makeArchive(dir.path);
    const data = image();
    await backupOf(archive, data);
    const failing = bufferSource(() => data, {
      beforeChunk: async (index) => {
        if (index === 2) throw new Error('device vanished');
      },
    });
    const error = await runBackup(archive, failing, { tags: ['daily'], logger: silent }).catch((e) => e);
    expect(error.message).toContain('device vanished');
    const scan = await archive.scan();
    expect(scan.complete).toHaveLength(1);
    expect(scan.interrupted).toEqual([]);
    expect(scan.orphans).toEqual([]);
    expect((await readdir(archive.path)).filter((f) => f.endsWith('.map'))).toHaveLength(1);
  });

  it('rejects a second concurrent backup at once', async () => {
    const archive = await makeArchive(dir.path);
    const data = image();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow = bufferSource(() => data, { beforeChunk: () => gate });
    const running = runBackup(archive, slow, { tags: ['daily'], logger: silent });
    await new Promise((r) => setTimeout(r, 200));
    const second = await backupOf(archive, data).catch((e) => e);
    expect(isBackyError(second, 'LOCKED')).toBe(true);
    expect(second.message).toMatch(/already running/);
    release();
    await running;
  });

  it('validates tags against the schedule unless forced', async () => {
    const archive = await makeArchive(dir.path, { schedule: { daily: { interval: '1d', keep: 3 } } });
    const data = image();
    const err = await runBackup(
      archive,
      bufferSource(() => data),
      { tags: ['hourly'], logger: silent },
    ).catch((e) => e);
    expect(isBackyError(err, 'USAGE')).toBe(true);
    await runBackup(
      archive,
      bufferSource(() => data),
      { tags: ['hourly'], force: true, logger: silent },
    );
    await runBackup(
      archive,
      bufferSource(() => data),
      { tags: ['manual:x'], logger: silent },
    );
    expect(await archive.revisions()).toHaveLength(2);
  });
});

describe('trust, verify and distrust', () => {
  it('finds a damaged chunk, names revision and offset, and the next backup heals it', async () => {
    const archive = await makeArchive(dir.path);
    const data = image();
    const rev = await backupOf(archive, data);
    const map = await archive.loadMap(rev);
    const hash = map.get(1)!;
    const path = (archive.store as DirectoryChunkStore).pathOf(hash);
    const bytes = await readFile(path);
    bytes[bytes.length - 1]! ^= 0xff;
    await writeFile(path, bytes);

    const [result] = await verifyRevisions(archive, [rev], { logger: silent });
    expect(result!.ok).toBe(false);
    expect(result!.damaged).toEqual([expect.objectContaining({ index: 1, offset: 4 * MiB, hash })]);
    expect((await archive.resolveOne(rev.uuid)).trust).toBe('distrusted');
    const restoreError = await restoreBytes(archive, rev.uuid).catch((e) => e);
    expect(isBackyError(restoreError, 'CHUNK_CORRUPT')).toBe(true);
    // verify moved the damaged file aside, so no backup can reuse it
    expect(restoreError.message).toContain(`moved it aside to ${path}.damaged`);
    expect(await archive.store.has(hash)).toBe(false);

    const next = await backupOf(archive, data);
    expect(next.stats.chunks_written).toBe(2); // rewritten, not trusted
    const [again] = await verifyRevisions(archive, [rev, next], { logger: silent });
    expect(again!.ok).toBe(true);
    expect((await archive.resolveOne(rev.uuid)).trust).toBe('verified');
    expect((await restoreBytes(archive, rev.uuid)).equals(data)).toBe(true);
  });
});

describe('expire and purge', () => {
  it('purges only chunks no archive of a shared store references', async () => {
    const shared = join(dir.path, 'shared-chunks');
    const a = await Archive.init(join(dir.path, 'a'), { source: { type: 'test' }, store: { path: shared } });
    const b = await Archive.init(join(dir.path, 'b'), { source: { type: 'test' }, store: { path: shared } });
    const common = image();
    const onlyA = Buffer.from(common);
    randomBytes(MiB).copy(onlyA, 9 * MiB);
    const revA = await runBackup(
      a,
      bufferSource(() => onlyA),
      { tags: ['x'], force: true, logger: silent },
    );
    const revB = await runBackup(
      b,
      bufferSource(() => common),
      { tags: ['x'], force: true, logger: silent },
    );
    expect(revB.stats.chunks_written).toBe(0); // chunks 0 and 1 are a's, chunk 2 is zero
    expect(revB.stats.chunks_reused).toBe(2);
    let result = await purgeStore(a.store, { logger: silent });
    expect(result.chunksDeleted).toBe(0);
    await a.deleteRevision(revA.uuid);
    result = await purgeStore(a.store, { logger: silent });
    expect(result.chunksDeleted).toBe(1); // a's own chunk 2; chunk 0 stays for b
    expect(result.archives).toBe(2);
    expect((await restoreBytes(b, 'last')).equals(common)).toBe(true);
  });

  it('does not purge while a backup holds the store', async () => {
    const archive = await makeArchive(dir.path);
    const lock = await archive.store.lock('shared');
    const err = await purgeStore(archive.store, { logger: silent }).catch((e) => e);
    expect(isBackyError(err, 'LOCKED')).toBe(true);
    await lock.release();
  });

  it('expires by the schedule and deletes untagged revisions', async () => {
    const archive = await makeArchive(dir.path, { schedule: { daily: { interval: '1d', keep: 1 } } });
    const data = image();
    let day = 0;
    const now = () => new Date(Date.UTC(2026, 0, 1 + day));
    for (; day < 4; day++)
      await runBackup(
        archive,
        bufferSource(() => data),
        { tags: ['daily'], logger: silent, now },
      );
    const actions = await expireArchive(archive, { logger: silent, now: new Date(Date.UTC(2026, 0, 4)) });
    expect(actions.filter((a) => a.remove)).toHaveLength(2);
    expect(await archive.revisions()).toHaveLength(2);
  });
});

describe('restore', () => {
  it('restores whole chunks with O_DIRECT, so the image does not fill the page cache', async () => {
    const archive = await makeArchive(dir.path);
    const data = randomBytes(12 * MiB + 100); // two raw chunks, one zstd chunk, a short tail
    Buffer.from('text '.repeat(900_000)).copy(data, 4 * MiB);
    const rev = await backupOf(archive, data);
    const resident = (path: string) =>
      Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path]).toString());
    // fincore sees what buffered writes leave behind …
    const control = join(dir.path, 'control.img');
    await writeFile(control, data);
    expect(resident(control)).toBeGreaterThanOrEqual(12 * MiB);
    // … and a restore leaves at most its short tail, written through the page cache.
    const target = join(dir.path, 'direct.img');
    const reader = await archive.openReader(rev);
    await restoreToPath(reader, target);
    await reader.close();
    expect(resident(target)).toBeLessThanOrEqual(64 * 1024);
    expect((await readFile(target)).equals(data)).toBe(true);
  });

  it('writes sparse files, refuses to overwrite, and cleans up on failure', async () => {
    const archive = await makeArchive(dir.path);
    const data = image();
    const rev = await backupOf(archive, data);
    const target = join(dir.path, 'out.img');
    const reader = await archive.openReader(rev);
    expect(await restoreToPath(reader, target)).toBe('file');
    expect((await readFile(target)).equals(data)).toBe(true);
    const blocks = Number(execFileSync('stat', ['-c', '%b', target]).toString()) * 512;
    expect(blocks).toBeLessThanOrEqual(8 * MiB); // the zero chunk (8 MiB to the end) is a hole
    const exists = await restoreToPath(reader, target).catch((e) => e);
    expect(isBackyError(exists, 'TARGET_EXISTS')).toBe(true);
    await mkdir(join(dir.path, 'adir'));
    expect(
      isBackyError(await restoreToPath(reader, join(dir.path, 'adir')).catch((e) => e), 'TARGET_INVALID'),
    ).toBe(true);
    expect((await readdir(dir.path)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    await reader.close();
  });

  it.each(['chunked', 'images'] as const)(
    'checks a fresh %s revision against the source: byte for byte where it wrote, by hash elsewhere',
    async (layout) => {
      const archive = await makeArchive(dir.path, { layout });
      const data = image();
      data.copy(data, 4 * MiB, 0, 4 * MiB); // chunk 1 repeats chunk 0: one file, two indexes
      const rev = await backupOf(archive, data);
      const map = await archive.loadMap(rev);
      const chunk = (i: number) => Buffer.from(data.subarray(i * 4 * MiB, (i + 1) * 4 * MiB));
      const fresh = new Set([map.get(0)!, map.get(1)!]);
      const changed = (i: number) => {
        const c = chunk(i);
        c[c.length - 1] = (c[c.length - 1] ?? 0) ^ 1;
        return c;
      };
      const reader = await archive.openReader(rev);
      // Unchanged source: every chunk matches, through both paths, and zero chunks need no store.
      let check = chunkChecker(reader, fresh, silent);
      for (let i = 0; i < reader.chunkCount; i++) {
        const got = await check(
          i,
          Buffer.from(data.subarray(i * 4 * MiB, i * 4 * MiB + reader.chunkLength(i))),
        );
        expect(got, `chunk ${i}`).toBe(true);
      }
      // The source changed after it was read: caught on the byte path (first use of a fresh chunk) and
      // on the hash path (its second index), and a zero chunk that is no longer zero.
      check = chunkChecker(reader, fresh, silent);
      expect(await check(0, changed(0))).toBe(false);
      expect(await check(1, changed(1))).toBe(false);
      expect(await check(2, Buffer.alloc(4 * MiB, 1))).toBe(false);

      // The stored copy is damaged: the source's bytes no longer equal it.
      if (layout === 'chunked') {
        const path = (archive.store as DirectoryChunkStore).pathOf(map.get(0)!);
        const bytes = await readFile(path);
        bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
        await writeFile(path, bytes);
        expect(await chunkChecker(reader, fresh, silent)(0, chunk(0))).toBe(false);
        // A chunk file gone is a mismatch too, not a crash.
        await rm(path);
        expect(await chunkChecker(reader, fresh, silent)(0, chunk(0))).toBe(false);
      } else {
        const file = archive.imagePath(rev.uuid);
        await writeAt(file, 100, Buffer.from('damage'));
        await reader.close();
        const again = await archive.openReader(rev);
        expect(await chunkChecker(again, fresh, silent)(0, chunk(0))).toBe(false);
        await again.close();
      }
      await reader.close();
    },
  );

  it('restores and verifies a revision whose chunks are named by SHA-256; the next backup is full', async () => {
    const archive = await makeArchive(dir.path);
    const data = image();
    const rev = await backupOf(archive, data);
    // Rewrite the revision as format 1 made it: a BKYMAP01 map naming chunks by SHA-256.
    const map = await archive.loadMap(rev);
    const old = new ChunkMap(map.size, map.chunkSize, undefined, 'sha256');
    for (let i = 0; i < map.chunkCount; i++) {
      const hash = map.get(i);
      if (hash == null) continue;
      const chunk = await archive.store.get(hash);
      old.set(i, sha256Hex(chunk));
      await archive.store.put(sha256Hex(chunk), chunk);
      await archive.store.delete(hash);
    }
    await rm(mapPath(archive.path, rev.uuid), { force: true });
    await old.save(mapPath(archive.path, rev.uuid));
    // Format 1 revisions recorded no checksum of their map.
    const revPath = join(archive.path, `${rev.uuid}.rev`);
    const { map_checksum: _, ...withoutChecksum } = parse(await readFile(revPath, 'utf8')) as Record<
      string,
      unknown
    >;
    await writeFile(revPath, stringify(withoutChecksum));

    expect((await restoreBytes(archive, rev.uuid)).equals(data)).toBe(true);
    const [result] = await verifyRevisions(archive, [await archive.resolveOne(rev.uuid)], { logger: silent });
    expect(result!.ok).toBe(true);
    const next = await backupOf(archive, data);
    expect(next.parent).toBe(rev.uuid);
    expect(next.stats.chunks_written).toBe(2); // nothing reused across hash algorithms
    expect((await archive.loadMap(next)).algorithm).toBe('blake3');
    expect((await restoreBytes(archive, rev.uuid)).equals(data)).toBe(true);
    expect((await restoreBytes(archive, next.uuid)).equals(data)).toBe(true);
  });
});

describe('BackyError from another copy of @backy/core', () => {
  it('is still a BackyError with its code (a plugin with its own copy throws those)', () => {
    // What another copy's class makes: another class object, the same global brand.
    class OtherCopy extends Error {
      readonly code = 'SOURCE_UNAVAILABLE';
      constructor(message: string) {
        super(message);
        this.name = 'BackyError';
        Object.defineProperty(this, Symbol.for('backy.BackyError'), { value: true });
      }
    }
    const foreign = new OtherCopy('image gone');
    expect(foreign instanceof BackyErrorClass).toBe(true);
    expect(isBackyError(foreign, 'SOURCE_UNAVAILABLE')).toBe(true);
    expect(new Error('x') instanceof BackyErrorClass).toBe(false);
  });
});
