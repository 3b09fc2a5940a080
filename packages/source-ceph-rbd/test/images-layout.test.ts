/** The ceph-rbd source on an archive with the `images` layout (plain image files, reflinked where possible). */
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Archive, type Revision, restoreToPath, runBackup } from '@backy/core';
import { MiB, tempArchive } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRbdSource } from '../src/index.js';
import { CHUNK, ceph, conf, logger, POOL, skipReason, uniqueImage } from './helpers.js';

const suite = skipReason ? describe.skip : describe;

suite('ceph-rbd source with the images layout', () => {
  const image = uniqueImage('images');
  let dir: string;
  let archive: Archive;

  const backup = () =>
    runBackup(
      archive,
      createRbdSource({ pool: POOL, image, conf, 'full-always': false }, { logger }, { verifyFraction: 1 }),
      {
        tags: ['test'],
        force: true,
        logger,
      },
    );
  const expectRestoreMatchesSnapshot = async (rev: Revision) => {
    const target = join(dir, `restore-${rev.uuid}`);
    const reader = await archive.openReader(rev);
    await restoreToPath(reader, target).finally(() => reader.close());
    expect((await readFile(target)).equals(await ceph.exportImage(`${image}@backy-${rev.uuid}`))).toBe(true);
    await rm(target);
    // Every chunk was compared with the snapshot, so the map's hashes are right too.
    expect(rev.verification).toMatchObject({ ok: true, method: 'full' });
  };

  beforeAll(async () => {
    ({ dir, archive } = await tempArchive(
      { source: { type: 'ceph-rbd' }, layout: 'images' },
      'backy-rbd-images-',
    ));
    await ceph.createImage(image, 12 * MiB, [{ offset: 0, data: randomBytes(12 * MiB) }]);
  });

  afterAll(async () => {
    await ceph.removeImage(image);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('makes full and incremental backups through grow, zero and shrink', async () => {
    const full = await backup();
    expect(full.source_info?.mode).toBe('full');
    await expectRestoreMatchesSnapshot(full);

    await ceph.writeImage(image, CHUNK + 77, randomBytes(3000));
    await ceph.qemuIo(image, `write -z ${2 * CHUNK} ${CHUNK}`);
    const diff = await backup();
    expect(diff.source_info?.mode).toBe('diff');
    expect(diff.verification?.ok).toBe(true);
    await expectRestoreMatchesSnapshot(diff);

    await ceph.resizeImage(image, 17 * MiB + 512);
    await ceph.writeImage(image, 16 * MiB, randomBytes(MiB));
    const grown = await backup();
    expect(grown.size).toBe(17 * MiB + 512);
    await expectRestoreMatchesSnapshot(grown);

    await ceph.resizeImage(image, 7 * MiB);
    const shrunk = await backup();
    expect(shrunk.source_info?.mode).toBe('diff');
    expect(shrunk.size).toBe(7 * MiB);
    expect(shrunk.verification?.ok).toBe(true);
    await expectRestoreMatchesSnapshot(shrunk);
  });
});
