import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  statfs,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { missingTools } from '@backy/test-env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Archive } from '../archive/index.js';
import { lastLinks } from '../archive/links.js';
import { runBackup } from '../backup.js';
import { restoreToPath } from '../restore.js';
import { bufferSource, MiB, silent } from '../test-helpers.js';
import { tempDir } from '../testing/helpers.js';
import { verifyRevisions } from '../verify.js';

const CHUNK = 4 * MiB;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** 16 chunks: random data with two zero chunks (5 and 11). */
function baseImage(): Buffer {
  const b = randomBytes(16 * CHUNK);
  b.fill(0, 5 * CHUNK, 6 * CHUNK);
  b.fill(0, 11 * CHUNK, 12 * CHUNK);
  return b;
}

/** The next day's image: two chunks changed a little, one chunk zeroed, one zero chunk filled. */
function nextImage(prev: Buffer): Buffer {
  const b = Buffer.from(prev);
  randomBytes(4096).copy(b, 2 * CHUNK + 8192);
  randomBytes(100).copy(b, 9 * CHUNK);
  b.fill(0, 7 * CHUNK, 8 * CHUNK);
  randomBytes(CHUNK).copy(b, 11 * CHUNK);
  return b;
}

async function backup(archive: Archive, data: Buffer, tag = 'manual:t') {
  return runBackup(
    archive,
    bufferSource(() => data),
    { tags: [tag], logger: silent },
  );
}

describe('images layout on the work disk (no reflinks)', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    dir = await tempDir('backy-images-');
  });
  afterAll(() => dir.cleanup());

  it('keeps each revision as a plain, read-only image file with a `last` link, sparse where zero', async () => {
    const archive = await Archive.init(join(dir.path, 'a'), { source: { type: 'test' }, layout: 'images' });
    expect((await archive.layoutWarnings()).join()).toMatch(/cannot reflink/);
    const v1 = baseImage();
    const r1 = await backup(archive, v1);
    expect(r1.backend_type).toBe('images');
    const v2 = nextImage(v1);
    const r2 = await backup(archive, v2);
    // 2 changed chunks + 1 filled chunk written; the zeroed chunk is a hole now. Without reflinks the
    // parent's 14 data chunks were copied first, and that copy counts as written bytes.
    expect(r2.stats.chunks_written).toBe(3);
    expect(r2.stats.bytes_written).toBe(3 * CHUNK + 14 * CHUNK);

    expect(sha(await readFile(archive.imagePath(r1.uuid)))).toBe(sha(v1));
    expect(sha(await readFile(archive.imagePath(r2.uuid)))).toBe(sha(v2));
    expect(await readlink(join(archive.path, 'last'))).toBe(r2.uuid);
    expect(sha(await readFile(join(archive.path, 'last')))).toBe(sha(v2)); // what `dd if=last` reads
    for (const r of [r1, r2]) expect((await stat(archive.imagePath(r.uuid))).mode & 0o777).toBe(0o440);
    // Zero chunks are holes: v2 has two zero chunks (5 and 7) of 16.
    expect((await stat(archive.imagePath(r2.uuid))).blocks * 512).toBeLessThanOrEqual(14 * CHUNK + MiB);

    // The same reader interface as the chunked layout: restore and verify work unchanged.
    const out = join(dir.path, 'restored.img');
    const reader = await archive.openReader(r1);
    await restoreToPath(reader, out);
    await reader.close();
    expect(sha(await readFile(out))).toBe(sha(v1));
    const [res1, res2] = await verifyRevisions(archive, [r1, r2], { logger: silent });
    expect(res1!.ok && res2!.ok).toBe(true);
  });

  it('detects a damaged image file, distrusts it, and makes the next backup a full one', async () => {
    const archive = await Archive.init(join(dir.path, 'b'), { source: { type: 'test' }, layout: 'images' });
    const v1 = baseImage();
    const r1 = await backup(archive, v1);
    const file = archive.imagePath(r1.uuid);
    await chmod(file, 0o644);
    const damaged = await readFile(file);
    damaged.writeUInt8(damaged.readUInt8(3 * CHUNK + 17) ^ 0xff, 3 * CHUNK + 17);
    await writeFile(file, damaged);
    const [result] = await verifyRevisions(archive, [r1], { logger: silent });
    expect(result!.ok).toBe(false);
    expect(result!.damaged.map((d) => d.index)).toEqual([3]);
    expect((await archive.resolveOne(r1.uuid)).trust).toBe('distrusted');
    const r2 = await backup(archive, v1);
    expect(r2.parent).toBe(r1.uuid);
    expect(r2.stats.chunks_written).toBe(14); // not cloned from the damaged file: every non-zero chunk
    expect(sha(await readFile(archive.imagePath(r2.uuid)))).toBe(sha(v1));
  });

  it('repairs `last`, removes leftovers of interrupted backups, and follows deletions', async () => {
    const archive = await Archive.init(join(dir.path, 'c'), { source: { type: 'test' }, layout: 'images' });
    const v1 = baseImage();
    const r1 = await backup(archive, v1);
    const r2 = await backup(archive, nextImage(v1));
    const last = join(archive.path, 'last');
    await rm(last);
    // An image whose backup never completed (its marker is there), an image file nobody claims, and a
    // temp file from a crashed writer.
    const crashed = '2222222222222222222222';
    await writeFile(join(archive.path, crashed), 'x');
    await writeFile(join(archive.path, `${crashed}.pending`), '1\n');
    const unknown = '3333333333333333333333';
    await writeFile(join(archive.path, unknown), 'x');
    await writeFile(join(archive.path, `.${r2.uuid}.abcd.tmp`), 'x');
    expect(await archive.cleanup(silent)).toEqual([crashed]);
    expect(await readlink(last)).toBe(r2.uuid);
    await expect(stat(join(archive.path, crashed))).rejects.toThrow();
    expect((await stat(join(archive.path, unknown))).size).toBe(1); // not provably ours: kept
    expect((await archive.scan()).orphans).toEqual([unknown]);
    await rm(last);
    await symlink(r1.uuid, last); // points at the wrong revision
    await lastLinks.update(archive.path, (await archive.revisions()).at(-1) ?? null);
    expect(await readlink(last)).toBe(r2.uuid);
    await archive.deleteRevision(r2.uuid);
    await expect(stat(archive.imagePath(r2.uuid))).rejects.toThrow();
    expect(await readlink(last)).toBe(r1.uuid);
    await archive.deleteRevision(r1.uuid);
    await expect(lstat(last)).rejects.toThrow();
  });

  it('leaves no image file of a backup refused after its image was sealed', async () => {
    const archive = await Archive.init(join(dir.path, 'refused'), {
      source: { type: 'test' },
      layout: 'images',
    });
    const kept = await runBackup(
      archive,
      bufferSource(() => randomBytes(CHUNK)),
      { tags: ['t'], logger: silent },
    );
    // An empty source is refused once its (empty) image is sealed under its final name, before the commit.
    const refused = await runBackup(
      archive,
      bufferSource(() => Buffer.alloc(0)),
      { tags: ['t'], logger: silent },
    ).then(
      () => null,
      (error: Error) => error.message,
    );
    expect(refused).toMatch(/is empty \(0 bytes/);
    expect((await archive.scan()).orphans).toEqual([]);
    expect((await readdir(archive.path)).filter((name) => /^[1-9A-HJ-NP-Za-km-z]{22}$/.test(name))).toEqual([
      kept.uuid,
    ]);
  });

  it('keeps a revision readable for an open reader while it is deleted', async () => {
    const archive = await Archive.init(join(dir.path, 'open-reader'), {
      source: { type: 'test' },
      layout: 'images',
    });
    const v1 = baseImage();
    const r1 = await backup(archive, v1);
    await backup(archive, nextImage(v1));
    const reader = await archive.openReader(r1);
    expect((await reader.read(0)).equals(v1.subarray(0, CHUNK))).toBe(true);
    await archive.deleteRevision(r1.uuid); // e.g. `backy forget` while an NBD client reads
    expect((await reader.read(3)).equals(v1.subarray(3 * CHUNK, 4 * CHUNK))).toBe(true);
    await reader.close();
    await expect(archive.openReader(r1)).rejects.toThrow(/cannot be read/); // gone for new readers
  });

  it('handles a growing and shrinking image', async () => {
    const archive = await Archive.init(join(dir.path, 'd'), { source: { type: 'test' }, layout: 'images' });
    const v1 = Buffer.concat([randomBytes(2 * CHUNK + 1000)]);
    await backup(archive, v1);
    const v2 = Buffer.concat([v1, randomBytes(CHUNK)]);
    const r2 = await backup(archive, v2);
    expect(sha(await readFile(archive.imagePath(r2.uuid)))).toBe(sha(v2));
    const v3 = v2.subarray(0, CHUNK + 5);
    const r3 = await backup(archive, v3);
    expect(sha(await readFile(archive.imagePath(r3.uuid)))).toBe(sha(v3));
    const [ok] = await verifyRevisions(archive, [r3], { logger: silent });
    expect(ok!.ok).toBe(true);
  });
});

/** Mounts a fresh file system of `type` from a loop file; null (with the reason printed) where impossible. */
function mountLoopFs(type: 'btrfs' | 'xfs', base: string): { mnt: string; unmount: () => void } | null {
  const why = (reason: string) => {
    console.warn(`skipped: ${type} reflink tests: ${reason}`);
    return null;
  };
  if (process.getuid?.() !== 0) return why('needs root to mount a loop device');
  const mkfs = type === 'btrfs' ? ['mkfs.btrfs', '-q', '-f'] : ['mkfs.xfs', '-q', '-f', '-m', 'reflink=1'];
  const missing = missingTools(mkfs[0]!, 'mount', 'umount', 'truncate');
  if (missing != null) return why(missing);
  const file = join(base, `${type}.img`);
  const mnt = join(base, `${type}-mnt`);
  spawnSync('truncate', ['-s', '512M', file]);
  const made = spawnSync(mkfs[0]!, [...mkfs.slice(1), file], { encoding: 'utf8' });
  if (made.status !== 0) return why(`${mkfs[0]} failed: ${made.stderr}`);
  spawnSync('mkdir', ['-p', mnt]);
  const mounted = spawnSync('mount', ['-o', 'loop', file, mnt], { encoding: 'utf8' });
  if (mounted.status !== 0) return why(`mount failed: ${mounted.stderr.trim()}`);
  return {
    mnt,
    unmount: () => {
      // Lazily if still busy, so a failed test never leaves a mount behind.
      if (spawnSync('umount', [mnt]).status !== 0) spawnSync('umount', ['-l', mnt]);
    },
  };
}

async function usedBytes(path: string): Promise<number> {
  spawnSync('sync', ['-f', path]);
  const s = await statfs(path);
  return (s.blocks - s.bfree) * s.bsize;
}

describe.each(['btrfs', 'xfs'] as const)('images layout on %s (reflink)', (type) => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let fs: ReturnType<typeof mountLoopFs> = null;
  beforeAll(async () => {
    dir = await tempDir(`backy-${type}-`);
    fs = mountLoopFs(type, dir.path);
  });
  afterAll(async () => {
    fs?.unmount();
    await dir.cleanup();
  });

  it('clones the parent and stores only changed chunks, with exact content', async (ctx) => {
    if (fs == null) ctx.skip();
    const path = join(fs!.mnt, 'archive');
    await mkdir(path);
    const archive = await Archive.init(path, { source: { type: 'test' }, layout: 'images' });
    expect(await archive.layoutWarnings()).toEqual([]);
    const v1 = baseImage();
    const r1 = await backup(archive, v1);
    const before = await usedBytes(path);
    const v2 = nextImage(v1);
    const r2 = await backup(archive, v2);
    expect(r2.stats.bytes_written).toBe(3 * CHUNK); // the clone itself costs nothing
    const grown = (await usedBytes(path)) - before;
    // A full copy would take ~56 MiB (14 data chunks); the clone costs the 3 rewritten chunks plus metadata.
    expect(grown).toBeLessThan(3 * CHUNK + 4 * MiB);
    expect(grown).toBeGreaterThan(2 * CHUNK);
    expect(sha(await readFile(archive.imagePath(r1.uuid)))).toBe(sha(v1));
    expect(sha(await readFile(archive.imagePath(r2.uuid)))).toBe(sha(v2));
    expect(sha(await readFile(join(path, 'last')))).toBe(sha(v2));
    if (type === 'btrfs') {
      const du = spawnSync('btrfs', ['filesystem', 'du', '--raw', archive.imagePath(r2.uuid)], {
        encoding: 'utf8',
      });
      // Columns: Total, Exclusive, Set shared, Filename. Most of the new image is shared with its parent.
      const [total, exclusive] = du.stdout.trim().split('\n').at(-1)!.trim().split(/\s+/).map(Number);
      expect(exclusive).toBeLessThanOrEqual(3 * CHUNK);
      expect(total).toBeGreaterThan(10 * CHUNK);
    } else {
      const fiemap = spawnSync('xfs_io', ['-r', '-c', 'fiemap -v', archive.imagePath(r2.uuid)], {
        encoding: 'utf8',
      });
      expect(fiemap.status).toBe(0);
      // FIEMAP_EXTENT_SHARED is 0x2000: extents of the clone still shared with the parent.
      const shared = fiemap.stdout.split('\n').filter((l) => /0x[0-9a-f]*2[0-9a-f]{3}\s*$/.test(l.trim()));
      expect(shared.length).toBeGreaterThan(0);
    }
    const [ok1, ok2] = await verifyRevisions(archive, [r1, r2], { logger: silent });
    expect(ok1!.ok && ok2!.ok).toBe(true);
  });
});
