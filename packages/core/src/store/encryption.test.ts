import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Archive } from '../archive/index.js';
import { mapPath } from '../archive/paths.js';
import { purgeStore } from '../purge.js';
import type { DirectoryChunkStore } from '../repository/chunk-store.js';
import { backupOf, MiB, rejection, silent } from '../test-helpers.js';
import { plaintextRuns, restoreToBuffer, tempDir, vmLikeData } from '../testing/helpers.js';
import { RemoteDirectoryBackend } from '../testing-fixtures/remote-directory.js';
import { verifyRevisions } from '../verify.js';
import { chunkHashHex } from './chunk-hash.js';
import type { StoreDriver } from './contract.js';
import { newKeyFile, writeKeyFile } from './key-file.js';

let dir: { path: string; cleanup: () => Promise<void> };
let keyFile: string;
beforeEach(async () => {
  dir = await tempDir('backy-crypt-');
  keyFile = join(dir.path, 'backup.key');
  await writeKeyFile(keyFile, await newKeyFile(null));
});
afterEach(() => dir.cleanup());

/** Every file under `root`, recursively. */
async function filesUnder(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    const path = join(root, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else out.push(path);
  }
  return out;
}

/** How many runs of `image`'s plaintext the files under `root` hold, all told. */
async function plaintextIn(root: string, image: Buffer): Promise<number> {
  let found = 0;
  for (const file of await filesUnder(root)) found += plaintextRuns(image, await readFile(file));
  return found;
}

/** A VM-like image (random, zero and log-text regions) and the same with a few changed blocks. */
function images(): [Buffer, Buffer] {
  const first = vmLikeData(12 * MiB + 777);
  const second = Buffer.from(first);
  second.write('changed by the second backup', 2 * MiB + 5);
  second.write('and here too', 9 * MiB + 100_000);
  return [first, second];
}

const encryptedConfig = (extra: Record<string, unknown> = {}) => ({
  source: { type: 'test' },
  store: { encryption: { 'key-file': '../backup.key' }, ...extra },
});

describe('an encrypted directory store', () => {
  it('backs up and restores byte for byte, with no plaintext and no plain names in the store', async () => {
    const archive = await Archive.init(join(dir.path, 'archive'), encryptedConfig());
    expect(archive.store.naming?.algorithm).toBe('keyed-blake3');
    const [v1, v2] = images();
    const first = await backupOf(archive, v1);
    const second = await backupOf(archive, v2);
    expect(second.parent).toBe(first.uuid);
    expect(second.stats.chunks_written).toBe(2);
    expect(second.stats.chunks_reused).toBeGreaterThan(0);
    expect((await restoreToBuffer(archive, first.uuid)).equals(v1)).toBe(true);
    expect((await restoreToBuffer(archive, second.uuid)).equals(v2)).toBe(true);
    const verified = await verifyRevisions(archive, await archive.revisions(), { logger: silent });
    expect(verified.map((r) => r.ok)).toEqual([true, true]);

    const chunks = join(archive.path, 'chunks');
    expect(await plaintextIn(chunks, v1)).toBe(0);
    expect(await plaintextIn(chunks, v2)).toBe(0);
    // Names are keyed: none is the plain hash of a chunk of the image.
    const names = new Set<string>();
    for await (const entry of archive.store.entries()) if (entry.hash != null) names.add(entry.hash);
    expect(names.size).toBeGreaterThan(3);
    for (let at = 0; at < v1.length; at += 4 * MiB)
      expect(names.has(chunkHashHex(v1.subarray(at, at + 4 * MiB)))).toBe(false);
    // The chunk maps in the archive directory are plaintext (docs/storage.md says so); they name keyed hashes.
    expect((await readFile(mapPath(archive.path, first.uuid))).subarray(0, 8).toString()).toBe('BKYMAP03');

    // Purge keeps what is referenced, and the key check, which is no chunk.
    await purgeStore(archive.store, { logger: silent });
    expect((await restoreToBuffer(archive, second.uuid)).equals(v2)).toBe(true);
    const reopened = await Archive.open(archive.path);
    expect((await restoreToBuffer(reopened, first.uuid)).equals(v1)).toBe(true);
  });

  it('makes the scan find plaintext in an unencrypted store of the same image (the scan is meaningful)', async () => {
    const archive = await Archive.init(join(dir.path, 'plain'), { source: { type: 'test' } });
    const [v1] = images();
    await backupOf(archive, v1);
    expect(await plaintextIn(join(archive.path, 'chunks'), v1)).toBeGreaterThan(1000);
  });

  it('refuses a wrong key in one line naming both keys, and moves no chunk aside', async () => {
    const archive = await Archive.init(join(dir.path, 'archive'), encryptedConfig());
    const [v1] = images();
    const rev = await backupOf(archive, v1);
    const before = (await filesUnder(join(archive.path, 'chunks'))).sort();
    await rm(keyFile);
    await writeKeyFile(keyFile, await newKeyFile(null));
    const wrong = await Archive.open(archive.path);
    const error = await rejection(restoreToBuffer(wrong, rev.uuid), 'CONFIG_INVALID');
    expect(error.message).toMatch(
      /^wrong key: .* is encrypted with key [0-9a-f]{16}, the key file .*backup\.key holds key [0-9a-f]{16}$/,
    );
    await rejection(backupOf(wrong, v1), 'CONFIG_INVALID');
    expect((await filesUnder(join(archive.path, 'chunks'))).sort()).toEqual(before);
  });

  it('names the config key and the file when the key file is missing', async () => {
    await rm(keyFile);
    const error = await rejection(
      Archive.init(join(dir.path, 'archive'), encryptedConfig()),
      'CONFIG_INVALID',
    );
    expect(error.message).toBe(
      `${join(dir.path, 'archive', 'config')}: store.encryption.key-file: key file ${keyFile} does not exist`,
    );
  });

  it('refuses encryption for the images layout, which keeps plain image files', async () => {
    const error = await rejection(
      Archive.init(join(dir.path, 'archive'), { ...encryptedConfig(), layout: 'images' }),
      'CONFIG_INVALID',
    );
    expect(error.message).toContain('store.encryption');
  });

  it('finds a tampered chunk corrupt, naming it, and returns no data from it', async () => {
    const archive = await Archive.init(join(dir.path, 'archive'), encryptedConfig());
    const [v1] = images();
    const rev = await backupOf(archive, v1);
    const map = await archive.loadMap(rev);
    const hash = map.get(0)!;
    const path = (archive.store as DirectoryChunkStore).pathOf(hash);
    const file = await readFile(path);
    file[file.length - 100]! ^= 1;
    await rm(path, { force: true });
    await writeFile(path, file);
    const error = await rejection(restoreToBuffer(archive, rev.uuid), 'CHUNK_CORRUPT');
    expect(error.message).toBe(
      `chunk ${hash} is damaged: it does not decrypt: the stored object was altered`,
    );
    // Moved aside, as any damaged chunk: the next backup writes it anew and the image restores again.
    await backupOf(archive, v1);
    expect((await restoreToBuffer(archive, 'last')).equals(v1)).toBe(true);
  });

  it('finds a tampered map invalid', async () => {
    const archive = await Archive.init(join(dir.path, 'archive'), encryptedConfig());
    const rev = await backupOf(archive, images()[0]);
    const map = await readFile(mapPath(archive.path, rev.uuid));
    map[40]! ^= 1;
    await rm(mapPath(archive.path, rev.uuid));
    await writeFile(mapPath(archive.path, rev.uuid), map);
    await rejection(restoreToBuffer(archive, rev.uuid), 'REVISION_INVALID');
  });

  it('is not read without its key: the maps name keyed hashes', async () => {
    const archive = await Archive.init(join(dir.path, 'archive'), encryptedConfig());
    const rev = await backupOf(archive, images()[0]);
    await writeFile(Archive.configPath(archive.path), 'source: {type: test}\n');
    // The store's record refuses the config at once, before any chunk is read (or written).
    const error = await rejection(Archive.open(archive.path), 'CONFIG_INVALID');
    expect(error.message).toContain('store.encryption.key-file is not set');
    expect(rev.uuid).toBeTruthy();
  });

  it('refuses a key for a store written without encryption', async () => {
    const archive = await Archive.init(join(dir.path, 'archive'), { source: { type: 'test' } });
    const rev = await backupOf(archive, images()[0]);
    await writeFile(Archive.configPath(archive.path), JSON.stringify(encryptedConfig()));
    const keyed = await Archive.open(archive.path);
    const error = await rejection(restoreToBuffer(keyed, rev.uuid), 'CONFIG_INVALID');
    expect(error.message).toContain('was not written with encryption');
  });
});

// A store that keeps the revisions too, as a remote one does: a directory backend without a local path,
// so every object (chunks, revision files) is a file that can be scanned.
const catalogDriver: StoreDriver<{ root: string }> = {
  type: 'remote',
  optionsSchema: z.object({ root: z.string() }),
  open: ({ root }) => new RemoteDirectoryBackend(root),
};

describe('an encrypted store with a catalog (as a remote store)', () => {
  const stores = { remote: catalogDriver };
  const remoteConfig = () => ({
    source: { type: 'test' },
    store: { type: 'remote', root: join(dir.path, 'remote'), encryption: { 'key-file': keyFile } },
  });

  it('keeps only ciphertext, and a new host with the config and the key restores every revision', async () => {
    const archive = await Archive.init(join(dir.path, 'archive'), remoteConfig(), { stores });
    const [v1, v2] = images();
    const first = await backupOf(archive, v1);
    const second = await backupOf(archive, v2);
    const remote = join(dir.path, 'remote');
    const revisionFiles = await filesUnder(join(remote, 'revisions'));
    expect(revisionFiles.map((f) => f.slice(f.lastIndexOf('/') + 1)).sort()).toEqual(
      [`${first.uuid}.map`, `${first.uuid}.rev`, `${second.uuid}.map`, `${second.uuid}.rev`].sort(),
    );
    expect(await plaintextIn(remote, v1)).toBe(0);
    expect(await plaintextIn(remote, v2)).toBe(0);
    // The revision files, too, hold nothing readable: not the map's magic, not the .rev's YAML.
    for (const file of revisionFiles) {
      const text = (await readFile(file)).toString('latin1');
      expect(text).not.toContain('BKYMAP');
      expect(text).not.toContain('timestamp');
      expect(text).not.toContain(first.uuid);
    }

    const fresh = join(dir.path, 'new-host');
    await mkdir(fresh);
    await writeFile(Archive.configPath(fresh), JSON.stringify(remoteConfig()));
    const restored = await Archive.attach(fresh, { stores });
    expect((await restored.revisions()).map((r) => r.uuid)).toEqual([first.uuid, second.uuid]);
    expect((await restoreToBuffer(restored, first.uuid)).equals(v1)).toBe(true);
    expect((await restoreToBuffer(restored, second.uuid)).equals(v2)).toBe(true);
  });

  it('finds a tampered map in the store invalid, naming it', async () => {
    const archive = await Archive.init(join(dir.path, 'archive'), remoteConfig(), { stores });
    const rev = await backupOf(archive, images()[0]);
    const path = join(dir.path, 'remote', 'revisions', `${rev.uuid}.map`);
    const map = await readFile(path);
    map[map.length >> 1]! ^= 1;
    await writeFile(path, map);
    const fresh = join(dir.path, 'new-host');
    await mkdir(fresh);
    await writeFile(Archive.configPath(fresh), JSON.stringify(remoteConfig()));
    const error = await rejection(Archive.attach(fresh, { stores }), 'REVISION_INVALID');
    expect(error.message).toBe(
      `${rev.uuid}.map in ${join(dir.path, 'remote')} does not decrypt: the stored object was altered`,
    );
  });

  it('says so when the store is opened without the key', async () => {
    const archive = await Archive.init(join(dir.path, 'archive'), remoteConfig(), { stores });
    await backupOf(archive, images()[0]);
    const fresh = join(dir.path, 'new-host');
    await mkdir(fresh);
    const { encryption: _, ...store } = remoteConfig().store;
    await writeFile(Archive.configPath(fresh), JSON.stringify({ ...remoteConfig(), store }));
    const error = await rejection(Archive.open(fresh, { stores }), 'CONFIG_INVALID');
    expect(error.message).toContain('store.encryption.key-file is not set');
    expect(await stat(join(fresh, 'chunks')).catch(() => null)).toBeNull();
  });
});
