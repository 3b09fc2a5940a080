import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from '../backup.js';
import { bufferSource, MiB, makeArchive, rejection, silent } from '../test-helpers.js';
import { tempDir } from '../testing/helpers.js';
import { FENCE_FILE, raiseFence, readFence } from './fence.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

const data = () => Buffer.alloc(2 * MiB, 7);
const revs = async (path: string) => (await readdir(path)).filter((f) => f.endsWith('.rev'));

describe('the archive fence (fleet mode)', () => {
  it('only rises: a lower token is refused with a line naming the newer holder', async () => {
    await raiseFence(dir.path, 10, 'a');
    await raiseFence(dir.path, 12, 'b');
    await raiseFence(dir.path, 12, 'b');
    expect((await readFence(dir.path))?.token).toBe(12);
    await expect(raiseFence(dir.path, 11, 'a')).rejects.toThrow(/fenced: .*token 11.*token 12 of server b/);
    expect(await readFence(dir.path)).toMatchObject({ token: 12, server: 'b' });
  });

  it('a damaged fence file is an error that names it, not "no fence"', async () => {
    await writeFile(join(dir.path, FENCE_FILE), 'garbage');
    await expect(readFence(dir.path)).rejects.toThrow(`${join(dir.path, FENCE_FILE)} is damaged`);
  });

  it("a backup under the fence's token commits; under an older one it fails before reading the source", async () => {
    const archive = await makeArchive(dir.path);
    await raiseFence(archive.path, 5, 'a');
    await runBackup(archive, bufferSource(data), { tags: ['daily'], logger: silent, fenceToken: 5 });
    expect(await revs(archive.path)).toHaveLength(1);
    await raiseFence(archive.path, 9, 'b');
    let read = false;
    const source = bufferSource(() => {
      read = true;
      return data();
    });
    const error = await rejection(
      runBackup(archive, source, { tags: ['daily'], logger: silent, fenceToken: 5 }),
      'LOCKED',
    );
    expect(error.message).toMatch(/fenced: this backup holds fleet token 5, .*token 9 of server b/);
    expect(read).toBe(false);
    expect(await revs(archive.path)).toHaveLength(1);
  });

  it('a server that loses the job while its backup runs does not commit, and leaves no revision', async () => {
    const archive = await makeArchive(dir.path);
    await raiseFence(archive.path, 5, 'a');
    // Another server takes the job (its fence) while this backup is reading the source.
    const source = bufferSource(data, {
      beforeChunk: async (index) => {
        if (index === 0) await raiseFence(archive.path, 8, 'b');
      },
    });
    const error = await rejection(
      runBackup(archive, source, { tags: ['daily'], logger: silent, fenceToken: 5 }),
      'LOCKED',
    );
    expect(error.message).toMatch(/token 8 of server b/);
    expect(await revs(archive.path)).toHaveLength(0);
    expect((await readdir(archive.path)).filter((f) => f.endsWith('.map') || f.endsWith('.pending'))).toEqual(
      [],
    );
  });

  it('without a token a backup ignores the fence (manual backups, no fleet)', async () => {
    const archive = await makeArchive(dir.path);
    await raiseFence(archive.path, 5, 'a');
    await runBackup(archive, bufferSource(data), { tags: ['daily'], logger: silent });
    expect(await revs(archive.path)).toHaveLength(1);
  });
});
