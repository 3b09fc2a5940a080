// Issue 12: private files, leftovers of failed backups and killed restores.
import { randomBytes } from 'node:crypto';
import { chmod, lstat, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Archive } from './archive/index.js';
import { runBackup } from './backup.js';
import { HISTORY_FILE } from './history-record.js';
import { purgeStore } from './purge.js';
import { restoreTempPath, restoreToPath } from './restore.js';
import type { RevisionReader } from './revision-io.js';
import { backupOf, bufferSource, MiB, makeArchive, silent } from './test-helpers.js';
import { restoreToBuffer, type TempDir, tempDir } from './testing/helpers.js';

let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

const backup = (archive: Archive, data: Buffer) => backupOf(archive, data);

/** Every path under `root` (itself included) whose mode lets "other" in, with its mode. */
async function openToOthers(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (path: string) => {
    const info = await lstat(path);
    if (info.isSymbolicLink()) return;
    if ((info.mode & 0o007) !== 0) found.push(`${path} ${(info.mode & 0o777).toString(8)}`);
    if (info.isDirectory()) for (const name of await readdir(path)) await walk(join(path, name));
  };
  await walk(root);
  return found;
}

async function chunkFiles(archive: Archive): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of archive.store.entries()) if (entry.hash != null) out.push(entry.hash);
  return out.sort();
}

describe('private data', () => {
  for (const layout of ['chunked', 'images'] as const) {
    it(`nothing of a ${layout} archive or its store is readable by others`, async () => {
      const archive = await makeArchive(dir.path, { layout });
      await backup(archive, randomBytes(5 * MiB));
      await backup(archive, randomBytes(5 * MiB));
      expect(await openToOthers(archive.path)).toEqual([]);
    });
  }

  it('an archive written with the old modes is fixed by its next backup', async () => {
    const archive = await makeArchive(dir.path);
    await backup(archive, randomBytes(5 * MiB));
    // As backy wrote them before: 0755 directories, 0444 chunks and maps, 0644 .rev files.
    const widen = async (path: string) => {
      const info = await lstat(path);
      if (info.isSymbolicLink()) return;
      await chmod(path, info.isDirectory() ? 0o755 : (info.mode & 0o777) | 0o444);
      if (info.isDirectory()) for (const name of await readdir(path)) await widen(join(path, name));
    };
    await widen(archive.path);
    expect(await openToOthers(archive.path)).not.toEqual([]);
    await backup(archive, randomBytes(5 * MiB));
    expect(await openToOthers(archive.path)).toEqual([]);
  });
});

describe('a failed backup leaves no chunks of its own', () => {
  const failing = (data: Buffer, failAt: number) =>
    bufferSource(() => data, {
      beforeChunk: async (index) => {
        if (index === failAt) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      },
    });

  it('removes the chunks it wrote, keeps those revisions reference', async () => {
    const archive = await makeArchive(dir.path);
    const first = randomBytes(8 * MiB);
    await backup(archive, first);
    const kept = await chunkFiles(archive);
    expect(kept).toHaveLength(2);
    // The same first 8 MiB (reused chunks), then new ones, then the disk is full.
    const second = Buffer.concat([first, randomBytes(16 * MiB)]);
    await expect(
      runBackup(archive, failing(second, 5), { tags: ['daily'], logger: silent }),
    ).rejects.toThrow();
    expect(await chunkFiles(archive)).toEqual(kept);
    expect((await restoreToBuffer(archive, 'last')).equals(first)).toBe(true);
  });

  it('leaves them to the next purge while the store is in use', async () => {
    const archive = await makeArchive(dir.path);
    const first = randomBytes(4 * MiB);
    await backup(archive, first);
    const reader = await archive.openReader((await archive.revisions())[0]!);
    try {
      await expect(
        runBackup(archive, failing(randomBytes(12 * MiB), 2), { tags: ['daily'], logger: silent }),
      ).rejects.toThrow();
      expect((await chunkFiles(archive)).length).toBeGreaterThan(1);
    } finally {
      await reader.close();
    }
    await purgeStore(archive.store, { logger: silent });
    expect(await chunkFiles(archive)).toHaveLength(1);
  });
});

describe('restore to a file', () => {
  /** A one-chunk reader whose read waits for `release`. */
  function stalledReader(release: Promise<void>): RevisionReader {
    const size = MiB;
    return {
      size,
      chunkSize: 4 * MiB,
      chunkCount: 1,
      chunkLength: () => size,
      isZero: () => false,
      hashAlgorithm: 'blake3',
      chunkHash: () => 'x',
      read: async () => {
        await release;
        return Buffer.alloc(size, 7);
      },
      close: async () => {},
    };
  }

  it('writes a private temp file that says what it is, and removes what a killed restore left', async () => {
    const target = join(dir.path, 'vm.img');
    // A killed restore's file: its process is gone (pid beyond the kernel's pid_max).
    const killed = restoreTempPath(target, 4_194_999);
    await writeFile(killed, 'partial image');
    let release!: () => void;
    const done = restoreToPath(
      stalledReader(
        new Promise((r) => {
          release = r;
        }),
      ),
      target,
    );
    const ours = restoreTempPath(target);
    for (let i = 0; i < 100 && !(await stat(ours).catch(() => null)); i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(ours).toBe(join(dir.path, `.vm.img.backy-restore-${process.pid}.tmp`));
    expect((await stat(ours)).mode & 0o777).toBe(0o600);
    expect(await stat(killed).catch(() => null)).toBeNull();
    release();
    await done;
    expect((await readdir(dir.path)).sort()).toEqual(['vm.img']);
    expect((await stat(target)).mode & 0o777).toBe(0o600);
  });
});

describe('the archive records that it has had revisions', () => {
  it('at its first commit, and keeps the record when every revision is forgotten', async () => {
    const archive = await makeArchive(dir.path);
    expect(await stat(join(archive.path, HISTORY_FILE)).catch(() => null)).toBeNull();
    const rev = await backup(archive, randomBytes(MiB));
    await archive.deleteRevision(rev.uuid);
    expect(await readFile(join(archive.path, HISTORY_FILE), 'utf8')).toContain(rev.uuid);
  });
});
