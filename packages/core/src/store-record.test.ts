import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { Archive } from './archive/index.js';
import { BackyError } from './errors.js';
import type { StoreDriver } from './store/contract.js';
import { newKeyFile, writeKeyFile } from './store/key-file.js';
import { backupOf, MiB, rejection } from './test-helpers.js';
import { restoreToBuffer, type TempDir, tempDir } from './testing/helpers.js';
import { RemoteDirectoryBackend } from './testing-fixtures/remote-directory.js';

// Issue 24: nothing ties the wrong data to an archive silently. The store's own record decides.
let dir: TempDir;
let keyFile: string;
beforeEach(async () => {
  dir = await tempDir('backy-record-');
  keyFile = join(dir.path, 'backup.key');
  await writeKeyFile(keyFile, await newKeyFile(null));
});
afterEach(() => dir.cleanup());

/** Every file under `root` with its size and mtime: what "nothing written" compares. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.name.endsWith('.lock') || entry.name === 'backy.log') continue;
    const path = join(entry.parentPath, entry.name);
    const info = await stat(path);
    out[path] = `${info.size} ${info.mtimeMs} ${(await readFile(path)).toString('base64').slice(0, 64)}`;
  }
  return out;
}

describe('an encrypted store is recognised by its own record, not by the config', () => {
  it('refuses an archive whose config lost store.encryption: no backup, nothing written, revisions intact', async () => {
    const path = join(dir.path, 'archive');
    const config = { source: { type: 'test' }, store: { encryption: { 'key-file': keyFile } } };
    const archive = await Archive.init(path, config);
    const data = randomBytes(3 * MiB);
    const rev = await backupOf(archive, data);
    const before = await snapshot(path);

    const { encryption: _, ...plainStore } = parse(await readFile(Archive.configPath(path), 'utf8')).store;
    await writeFile(Archive.configPath(path), stringify({ ...config, store: plainStore }));
    const error = await rejection(
      (async () => backupOf(await Archive.open(path), randomBytes(3 * MiB)))(),
      'CONFIG_INVALID',
    );
    expect(error.message).toContain('store.encryption.key-file');
    expect(error.message).toContain(join(path, 'chunks'));
    const after = await snapshot(path);
    delete after[Archive.configPath(path)];
    delete before[Archive.configPath(path)];
    expect(after).toEqual(before);

    // With the key back, the revision restores as it was.
    await writeFile(Archive.configPath(path), stringify(config));
    expect((await restoreToBuffer(await Archive.open(path), rev.uuid)).equals(data)).toBe(true);
  });

  it('refuses a new archive without encryption on a shared store that is encrypted, writing nothing', async () => {
    const store = join(dir.path, 'shared');
    const a = await Archive.init(join(dir.path, 'a'), {
      source: { type: 'test' },
      store: { path: store, encryption: { 'key-file': keyFile } },
    });
    await backupOf(a, randomBytes(MiB));
    const before = await snapshot(store);
    const error = await rejection(
      Archive.init(join(dir.path, 'b'), { source: { type: 'test' }, store: { path: store } }),
      'CONFIG_INVALID',
    );
    expect(error.message).toContain('store.encryption.key-file');
    expect(await readdir(dir.path)).not.toContain('b');
    expect(await snapshot(store)).toEqual(before);
  });

  it('still shares a plain directory store among archives (chunks shared, revisions per archive)', async () => {
    const store = join(dir.path, 'shared');
    const a = await Archive.init(join(dir.path, 'a'), { source: { type: 'test' }, store: { path: store } });
    const b = await Archive.init(join(dir.path, 'b'), { source: { type: 'test' }, store: { path: store } });
    const data = randomBytes(2 * MiB);
    const ra = await backupOf(a, data);
    const rb = await backupOf(b, data);
    expect((await a.revisions()).map((r) => r.uuid)).toEqual([ra.uuid]);
    expect((await b.revisions()).map((r) => r.uuid)).toEqual([rb.uuid]);
    expect(rb.stats.chunks_written).toBe(0);
    expect(await b.id()).not.toBe(await a.id());
  });
});

describe('a key file others can read', () => {
  it('is refused in one line naming the file, its mode and the fix; 0600 and 0400 are used', async () => {
    const path = join(dir.path, 'archive');
    const config = { source: { type: 'test' }, store: { encryption: { 'key-file': keyFile } } };
    await Archive.init(path, config);
    for (const mode of [0o644, 0o640, 0o604]) {
      await chmod(keyFile, mode);
      const error = await rejection(Archive.open(path), 'CONFIG_INVALID');
      expect(error.message).toContain('store.encryption.key-file');
      expect(error.message).toContain(keyFile);
      expect(error.message).toContain(`0${mode.toString(8)}`);
      expect(error.message).toContain(`chmod 600 ${keyFile}`);
    }
    for (const mode of [0o600, 0o400]) {
      await chmod(keyFile, mode);
      await Archive.open(path);
    }
  });
});

// A remote store as the S3 driver is one (its catalog keeps the revisions, registering claims it): a
// directory backend without a local path; two configs naming one root share it.
const remote: StoreDriver<{ root: string }> = {
  type: 'remote',
  optionsSchema: z.object({ root: z.string() }),
  open: ({ root }) => new RemoteDirectoryBackend(root),
};
const stores = { remote };

describe("a remote store holds one archive's history", () => {
  it('init refuses it for a second archive, leaving nothing; every command refuses a directory that is not attached', async () => {
    const config = { source: { type: 'test' }, store: { type: 'remote', root: join(dir.path, 'bucket') } };
    const a = await Archive.init(join(dir.path, 'a'), config, { stores });
    const data = randomBytes(2 * MiB);
    const rev = await backupOf(a, data);
    const id = await a.id();

    const error = await rejection(Archive.init(join(dir.path, 'b'), config, { stores }), 'CONFIG_INVALID');
    expect(error.message).toContain(`already holds the history of archive ${id}`);
    expect(error.message).toContain('--attach');
    expect(await readdir(dir.path)).not.toContain('b');

    // A config copied (or written by the daemon) into a directory without an ID: refused, not adopted.
    const copied = join(dir.path, 'copied');
    await mkdir(copied);
    await writeFile(Archive.configPath(copied), stringify(config));
    const open = await rejection(Archive.open(copied, { stores }), 'CONFIG_INVALID');
    expect(open.message).toContain(`holds the revisions of archive ${id}, and ${copied} has no archive ID`);
    expect(await readdir(copied)).toEqual(['config']);
    // Attached, it is that archive.
    const attached = await Archive.attach(copied, { stores });
    expect(await attached.id()).toBe(id);
    expect((await restoreToBuffer(attached, rev.uuid)).equals(data)).toBe(true);
    // init --attach with a config: the same.
    const c = await Archive.init(join(dir.path, 'c'), config, { stores, attach: true });
    expect((await c.revisions()).map((r) => r.uuid)).toEqual([rev.uuid]);

    // A directory with an ID of its own: refused naming both.
    await writeFile(join(copied, 'archive-id'), 'AAAAAAAAAAAAAAAAAAAAAA\n');
    const other = await rejection(Archive.open(copied, { stores }), 'CONFIG_INVALID');
    expect(other.message).toContain(`(ID ${id}, this one is AAAAAAAAAAAAAAAAAAAAAA)`);

    // --attach to a store that holds no archive: refused, nothing left.
    const empty = { ...config, store: { type: 'remote', root: join(dir.path, 'typo') } };
    const nothing = await rejection(
      Archive.init(join(dir.path, 'd'), empty, { stores, attach: true }),
      'USAGE',
    );
    expect(nothing.message).toContain('holds no archive to attach to');
    expect(await readdir(dir.path)).not.toContain('d');
    expect((await a.revisions()).map((r) => r.uuid)).toEqual([rev.uuid]);
  });
});

describe('a failed init', () => {
  it('leaves nothing behind (no config, no archive-id, no directory), so that it can run again', async () => {
    const blocker = join(dir.path, 'not-a-directory');
    await writeFile(blocker, 'x');
    const path = join(dir.path, 'archive');
    const config = { source: { type: 'test' }, store: { path: join(blocker, 'store') } };
    await rejection(Archive.init(path, config), 'IO');
    expect(await readdir(dir.path)).not.toContain('archive');
    // Into a directory that was there: it stays, empty as it was.
    await mkdir(path);
    await rejection(Archive.init(path, config), 'IO');
    expect(await readdir(path)).toEqual([]);
    // A check that refuses runs before anything is written.
    const refused = Archive.init(
      join(dir.path, 'checked'),
      { source: { type: 'test' } },
      {
        check: async () => {
          throw new BackyError('USAGE', 'refused by the check');
        },
      },
    );
    await rejection(refused, 'USAGE');
    expect(await readdir(dir.path)).not.toContain('checked');
    // With the options fixed, the same directory is made.
    await Archive.init(path, { source: { type: 'test' } });
    expect((await readdir(path)).sort()).toEqual(['archive-id', 'chunks', 'config']);
  });
});
