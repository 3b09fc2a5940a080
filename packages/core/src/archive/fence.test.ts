import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { runBackup } from '../backup.js';
import { raiseStoreFence, readStoreFence, STORE_FENCE } from '../repository/store-fence.js';
import type { StoreDriver } from '../store/contract.js';
import { bufferSource, MiB, makeArchive, rejection, silent } from '../test-helpers.js';
import { tempDir } from '../testing/helpers.js';
import { RemoteDirectoryBackend } from '../testing-fixtures/remote-directory.js';
import { Archive } from './archive.js';
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

// A remote store as the S3 driver is one (revisions and leases in the store): a directory backend
// without a local path. Two archive directories with one root are two servers on one S3 prefix.
const remote: StoreDriver<{ root: string }> = {
  type: 'remote',
  optionsSchema: z.object({ root: z.string() }),
  open: ({ root }) => new RemoteDirectoryBackend(root),
};
const stores = { remote };

describe("a remote store's fence (fleet mode with per-server archive directories)", () => {
  it('only rises, atomically: a lower token never overwrites a higher one, of racing raisers the highest stays', async () => {
    const backend = new RemoteDirectoryBackend(join(dir.path, 'bucket'));
    expect(await readStoreFence(backend)).toBeNull();
    expect(await raiseStoreFence(backend, 10, 'a')).toBeNull();
    expect(await raiseStoreFence(backend, 12, 'b')).toBeNull();
    expect(await raiseStoreFence(backend, 12, 'b')).toBeNull();
    expect(await raiseStoreFence(backend, 11, 'a')).toMatchObject({ token: 12, server: 'b' });
    expect(await readStoreFence(backend)).toMatchObject({ token: 12, server: 'b' });
    // Racing raisers through separate backends (as separate hosts): whatever the interleaving, the
    // highest token stays, and each lower raiser either came first or is told the higher one.
    for (let round = 0; round < 5; round++) {
      const base = 100 * (round + 1);
      const tokens = [base + 3, base + 1, base + 5, base + 2, base + 4];
      const results = await Promise.all(
        tokens.map((t) => raiseStoreFence(new RemoteDirectoryBackend(join(dir.path, 'bucket')), t, `s${t}`)),
      );
      expect(await readStoreFence(backend)).toMatchObject({ token: base + 5, server: `s${base + 5}` });
      expect(results[2]).toBeNull();
      for (const result of results) if (result != null) expect(result.token).toBeGreaterThan(base);
    }
  });

  it('a damaged fence object is an error that names it', async () => {
    const backend = new RemoteDirectoryBackend(join(dir.path, 'bucket'));
    await backend.save(STORE_FENCE, Buffer.from('garbage'));
    await expect(raiseStoreFence(backend, 3, 'a')).rejects.toThrow(/locks\/fence is damaged/);
  });

  async function twoServers() {
    const config = { source: { type: 'test' }, store: { type: 'remote', root: join(dir.path, 'bucket') } };
    const a = await Archive.init(join(dir.path, 'a'), config, { stores });
    const bDir = join(dir.path, 'b');
    await Archive.init(bDir, config, { stores, attach: true });
    return { a, b: await Archive.open(bDir, { stores }) };
  }
  const storeRevs = async (archive: Archive) => (await archive.store.catalog!.list()).size;

  it("a stale server's backup is refused before reading its source when the store's fence is higher", async () => {
    const { a, b } = await twoServers();
    // Each server's own directory fence holds its own token: only the store's tells A it is stale.
    await raiseFence(a.path, 5, 'a');
    await raiseFence(b.path, 9, 'b');
    expect(await b.store.catalog!.raiseFence(9, 'b')).toBeNull();
    let read = false;
    const source = bufferSource(() => {
      read = true;
      return data();
    });
    const error = await rejection(
      runBackup(a, source, { tags: ['daily'], logger: silent, fenceToken: 5 }),
      'LOCKED',
    );
    expect(error.message).toMatch(
      /fenced: this backup holds fleet token 5, but the store's fence .*token 9 of server b/,
    );
    expect(read).toBe(false);
    expect(await storeRevs(a)).toBe(0);
    await runBackup(b, bufferSource(data), { tags: ['daily'], logger: silent, fenceToken: 9 });
    expect(await storeRevs(b)).toBe(1);
  });

  it('a backup raises the store fence to its token, and does not commit once another server raised it meanwhile', async () => {
    const { a, b } = await twoServers();
    await raiseFence(a.path, 5, 'a');
    const source = bufferSource(data, {
      beforeChunk: async (index) => {
        if (index !== 0) return;
        // The backup raised the store's fence to its own token before reading.
        expect(await a.store.catalog!.fence()).toMatchObject({ token: 5, server: 'a' });
        expect(await b.store.catalog!.raiseFence(8, 'b')).toBeNull();
      },
    });
    const error = await rejection(
      runBackup(a, source, { tags: ['daily'], logger: silent, fenceToken: 5 }),
      'LOCKED',
    );
    expect(error.message).toMatch(/store's fence .*token 8 of server b/);
    expect(await storeRevs(a)).toBe(0);
    expect(await revs(a.path)).toHaveLength(0);
  });
});
