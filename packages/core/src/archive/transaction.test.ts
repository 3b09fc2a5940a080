import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import type { SaveOptions } from '../backend/contract.js';
import { BackyError } from '../errors.js';
import type { StoreDriver } from '../store/contract.js';
import { backupOf, MiB, makeArchive } from '../test-helpers.js';
import { restoreToBuffer, type TempDir, tempDir } from '../testing/helpers.js';
import { RemoteDirectoryBackend } from '../testing-fixtures/remote-directory.js';
import { Archive } from './archive.js';
import { RevisionTransaction } from './transaction.js';

// A failure after the commit made the revision visible must never take its map or its chunks: the
// abort that follows decides by the `.rev` before anything of the revision is removed.

let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

const backup = (archive: Archive, data: Buffer) => backupOf(archive, data);

/** The chunks the store holds, by path. */
async function chunkFiles(archive: Archive): Promise<string[]> {
  const out: string[] = [];
  for await (const e of archive.store.entries()) if (e.hash != null) out.push(e.path);
  return out;
}

describe('a backup whose commit fails after the .rev is written', () => {
  it('keeps the revision: its map and its fresh chunks stay, and it restores', async () => {
    const archive = await makeArchive(dir.path);
    const data = randomBytes(3 * MiB);
    const commit = RevisionTransaction.prototype.commit;
    let id = '';
    // The `.rev` is in place, then the commit reports a failure (what any step after it may do).
    const spy = vi.spyOn(RevisionTransaction.prototype, 'commit').mockImplementation(async function (
      this: RevisionTransaction,
      rev,
    ) {
      id = rev.uuid;
      await commit.call(this, rev);
      throw Object.assign(new Error('EIO: i/o error, after the .rev'), { code: 'EIO' });
    });
    try {
      await expect(backup(archive, data)).rejects.toThrow(/EIO/);
    } finally {
      spy.mockRestore();
    }
    const names = await readdir(archive.path);
    expect(names).toContain(`${id}.rev`);
    expect(names).toContain(`${id}.map`);
    expect((await chunkFiles(archive)).length).toBeGreaterThan(0);
    expect((await archive.revisions()).map((r) => r.uuid)).toEqual([id]);
    expect((await restoreToBuffer(archive, id)).equals(data)).toBe(true);
  });

  it('removes what a commit that failed before the .rev left, as before', async () => {
    const archive = await makeArchive(dir.path);
    let id = '';
    const spy = vi.spyOn(RevisionTransaction.prototype, 'commit').mockImplementation(async function (
      this: RevisionTransaction,
      rev,
    ) {
      id = rev.uuid;
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    });
    try {
      await expect(backup(archive, randomBytes(3 * MiB))).rejects.toThrow(/no space left/);
    } finally {
      spy.mockRestore();
    }
    expect((await readdir(archive.path)).filter((n) => n.startsWith(id))).toEqual([]);
    expect(await chunkFiles(archive)).toEqual([]);
  });
});

/** A remote store whose PUT of a `.rev` lands but whose answer is lost while `lose` is set. */
class LostAnswers extends RemoteDirectoryBackend {
  lose = false;
  override async save(name: string, data: Uint8Array, options?: SaveOptions) {
    const saved = await super.save(name, data, options);
    if (this.lose && name.startsWith('revisions/') && name.endsWith('.rev'))
      throw new BackyError('IO', `writing ${name}: ${this.location}: the endpoint closed the connection`);
    return saved;
  }
}

describe('a remote store whose answer to the .rev PUT is lost', () => {
  it('keeps the revision the store holds: map and chunks stay, the next backup fetches it and it restores', async () => {
    let store: LostAnswers | null = null;
    const remote: StoreDriver<{ root: string }> = {
      type: 'remote',
      optionsSchema: z.object({ root: z.string() }),
      open: ({ root }) => {
        store = new LostAnswers(root);
        return store;
      },
    };
    const stores = { remote };
    const config = { source: { type: 'test' }, store: { type: 'remote', root: join(dir.path, 'bucket') } };
    const archive = await Archive.init(join(dir.path, 'archive'), config, { stores });
    const data = randomBytes(3 * MiB);
    store!.lose = true;
    await expect(backup(archive, data)).rejects.toThrow(/the endpoint closed the connection/);
    store!.lose = false;
    const held = (await readdir(join(dir.path, 'bucket', 'revisions'))).filter((n) => n.endsWith('.rev'));
    expect(held).toHaveLength(1);
    const id = held[0]!.slice(0, -'.rev'.length);
    // Not committed here, but kept: the store has it.
    expect(await readdir(archive.path)).toContain(`${id}.map`);
    expect(await readdir(archive.path)).not.toContain(`${id}.rev`);
    const chunks = (await chunkFiles(archive)).length;
    expect(chunks).toBeGreaterThan(0);
    // The next backup pulls it from the store; it restores from the chunks that stayed.
    const again = await Archive.open(archive.path, { stores });
    const next = await backup(again, data);
    expect(next.parent).toBe(id);
    expect((await again.revisions()).map((r) => r.uuid)).toEqual([id, next.uuid]);
    expect((await restoreToBuffer(again, id)).equals(data)).toBe(true);
  });
});
