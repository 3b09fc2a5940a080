import { randomBytes } from 'node:crypto';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Archive } from './archive/index.js';
import { mapPath, revPath } from './archive/paths.js';
import { runBackup } from './backup.js';
import { copyRevisions } from './copy.js';
import { isBackyError } from './errors.js';
import { bufferSource, MiB, silent } from './test-helpers.js';
import { restoreToBuffer, type TempDir, tempDir } from './testing/helpers.js';
import { verifyRevisions } from './verify.js';

// Issue 24, item 6: a `.map` copied over another revision's `.map` must not pass as that revision.
let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

async function twoRevisions(layout: 'chunked' | 'images' = 'chunked') {
  const archive = await Archive.init(join(dir.path, 'archive'), { source: { type: 'test' }, layout });
  const v1 = randomBytes(2 * MiB + 17);
  const v2 = randomBytes(3 * MiB);
  const r1 = await runBackup(
    archive,
    bufferSource(() => v1),
    { tags: ['daily'], logger: silent },
  );
  const r2 = await runBackup(
    archive,
    bufferSource(() => v2),
    { tags: ['daily'], logger: silent },
  );
  return { archive, r1, r2, v1, v2 };
}

/**
 * `from`'s map copied over `to`'s; `to`'s recorded size is made `from`'s too, so that the size check
 * cannot be what catches it.
 */
async function copyMapOver(archive: Archive, from: string, to: string): Promise<void> {
  const size = parse(await readFile(revPath(archive.path, from), 'utf8')).size;
  const rev = parse(await readFile(revPath(archive.path, to), 'utf8'));
  await writeFile(revPath(archive.path, to), stringify({ ...rev, size }));
  await copyFile(mapPath(archive.path, from), mapPath(archive.path, to));
}

describe("a revision's map is bound to it", () => {
  it('records the map checksum in the .rev', async () => {
    const { archive, r2 } = await twoRevisions();
    const rev = parse(await readFile(revPath(archive.path, r2.uuid), 'utf8'));
    expect(rev.map_checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(rev.map_checksum).toBe(
      (await readFile(mapPath(archive.path, r2.uuid))).subarray(-32).toString('hex'),
    );
  });

  for (const layout of ['chunked', 'images'] as const) {
    it(`(${layout}) refuses another revision's map in restore and verify, naming the revision`, async () => {
      const { archive, r1, r2, v1 } = await twoRevisions(layout);
      await copyMapOver(archive, r1.uuid, r2.uuid);
      if (layout === 'images') await copyFile(archive.imagePath(r1.uuid), archive.imagePath(r2.uuid));

      const restored = await restoreToBuffer(archive, r2.uuid).catch((e: Error) => e);
      expect(isBackyError(restored, 'REVISION_INVALID')).toBe(true);
      const message = (restored as Error).message;
      expect(message).toContain(`revision ${r2.uuid}`);
      expect(message).toContain('not the one it was written with');
      expect(message).not.toContain('\n');

      const results = await verifyRevisions(archive, await archive.revisions(), { logger: silent });
      expect(results.find((r) => r.uuid === r1.uuid)?.ok).toBe(true);
      const bad = results.find((r) => r.uuid === r2.uuid)!;
      expect(bad.ok).toBe(false);
      expect(bad.problem).toContain(`revision ${r2.uuid}`);
      expect((await archive.resolveOne(r2.uuid)).trust).toBe('distrusted');
      // The revision whose map it is still restores.
      expect((await restoreToBuffer(archive, r1.uuid)).equals(v1)).toBe(true);
    });
  }

  it('refuses it in a copy, and the next backup does not build upon it', async () => {
    const { archive, r1, r2 } = await twoRevisions();
    await copyMapOver(archive, r1.uuid, r2.uuid);
    const target = await Archive.init(join(dir.path, 'target'), { source: { type: 'test' } });
    const copied = await copyRevisions(archive, target, [r2], { logger: silent }).catch((e: Error) => e);
    expect(isBackyError(copied, 'REVISION_INVALID')).toBe(true);
    expect((copied as Error).message).toContain(`revision ${r2.uuid}`);
    expect(await target.revisions()).toEqual([]);
    const parent = await archive.usableParent(await archive.revisions(), silent);
    expect(parent?.revision.uuid).toBe(r1.uuid);
  });

  it('reads revisions written before maps were bound (no map_checksum) as they are', async () => {
    const { archive, r2, v2 } = await twoRevisions();
    const { map_checksum: _, ...old } = parse(await readFile(revPath(archive.path, r2.uuid), 'utf8'));
    await writeFile(revPath(archive.path, r2.uuid), stringify(old));
    expect((await archive.resolveOne(r2.uuid)).map_checksum).toBeUndefined();
    expect((await restoreToBuffer(archive, r2.uuid)).equals(v2)).toBe(true);
    // A copy binds it in the target.
    const target = await Archive.init(join(dir.path, 'target'), { source: { type: 'test' } });
    await copyRevisions(archive, target, [await archive.resolveOne(r2.uuid)], { logger: silent });
    expect((await target.resolveOne(r2.uuid)).map_checksum).toMatch(/^[0-9a-f]{64}$/);
    expect((await restoreToBuffer(target, r2.uuid)).equals(v2)).toBe(true);
  });
});
