// Which archive a directory is (its `archive-id`), and whether its store is this archive's: the checks
// of `open`, `init` and `init --attach`, and the files `init` writes (or leaves behind on failure).
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { BackyError, ioError } from '../errors.js';
import { ARCHIVE_ID_FILE } from '../format/archive-files.js';
import { exists, writeFileAtomic } from '../fs-util.js';
import { isRevisionId, newRevisionId } from '../ids.js';
import { PRIVATE_DIR_MODE } from '../private-modes.js';
import { isEncryptedStore } from '../store/encryption.js';
import { type ArchiveParts, configPath } from './paths.js';

/** The `archive-id` of the archive at `dir` as written (trimmed), or null when it has none. */
export async function readArchiveId(dir: string): Promise<string | null> {
  const file = join(dir, ARCHIVE_ID_FILE);
  return readFile(file, 'utf8').then(
    (t) => t.trim(),
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw ioError(error, `reading ${file}`);
    },
  );
}

function writeArchiveId(dir: string, id: string): Promise<void> {
  return writeFileAtomic(join(dir, ARCHIVE_ID_FILE), `${id}\n`, { mode: 0o640 });
}

/** The archive's ID (`archive-id`), made on first use; it stays the same when the directory moves. */
export async function ensureArchiveId(dir: string): Promise<string> {
  // Never taken from a remote store: a directory becomes the archive a store holds only by
  // `init --attach`, which writes the store's ID here (see checkNewStore).
  const existing = await readArchiveId(dir);
  if (existing != null && !isRevisionId(existing)) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${join(dir, ARCHIVE_ID_FILE)}: not an archive ID (${JSON.stringify(existing.slice(0, 40))})`,
    );
  }
  const id = existing ?? newRevisionId();
  if ((await readArchiveId(dir)) == null) await writeArchiveId(dir, id);
  return id;
}

/**
 * Refuses a store that is not this archive's as configured, in one line naming both sides: an
 * encrypted store while the config has no `store.encryption` (the next backup would write plaintext
 * into it), and a remote store that holds another archive's revisions, or any archive's while this
 * directory has no ID of its own (it is attached explicitly: `init --attach`).
 */
export async function checkStore(archive: ArchiveParts): Promise<void> {
  const { path, store } = archive;
  // The marker first: a GET, whose failure carries S3's error code (a wrong key is said as such).
  const owner = (await store.catalog?.archiveId()) ?? null;
  await checkEncryption(archive);
  if (owner == null) return;
  const local = await readArchiveId(path);
  if (local === owner) return;
  const where = configPath(path);
  if (local == null) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${where}: store: ${store.root} holds the revisions of archive ${owner}, and ${path} has no archive ID: if this directory is that archive (a new host), attach it with \`backy -b ${path} init --attach\`; otherwise give it its own store.prefix`,
    );
  }
  throw new BackyError(
    'CONFIG_INVALID',
    `${where}: store: ${store.root} belongs to another archive (ID ${owner}, this one is ${local}); give each archive its own store.prefix`,
  );
}

async function checkEncryption({ path, config, store }: ArchiveParts): Promise<void> {
  if (config.store.encryption != null) return; // the encrypted store checks its key itself
  if (await isEncryptedStore(store)) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${configPath(path)}: store.encryption.key-file is not set, but ${store.root} is encrypted: put store.encryption back (backy never writes unencrypted data into an encrypted store)`,
    );
  }
}

/**
 * For `init`: the ID of the archive whose history the store holds when this directory is to become it
 * (`attach`), else null; refuses a store holding another archive's history without `attach`, and
 * `attach` to a store holding none. Nothing is written.
 */
export async function checkNewStore(archive: ArchiveParts, attach: boolean): Promise<string | null> {
  const { path, store } = archive;
  const catalog = store.catalog;
  const owner = (await catalog?.archiveId()) ?? null;
  await checkEncryption(archive);
  const local = await readArchiveId(path);
  if (owner == null) {
    if (attach) {
      throw new BackyError(
        'USAGE',
        `init --attach: ${store.root} holds no archive to attach to (${catalog == null ? 'a directory store keeps no revisions: --attach is for a remote store' : 'no archive has claimed it'})`,
      );
    }
    return null;
  }
  if (local === owner) return owner;
  if (local != null) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${configPath(path)}: store: ${store.root} belongs to another archive (ID ${owner}, this directory is ${local}); give each archive its own store.prefix`,
    );
  }
  if (!attach) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${configPath(path)}: store: ${store.root} already holds the history of archive ${owner}: refusing to mix another archive into it; give this archive its own store.prefix, or pass --attach if this directory is to be that archive (e.g. on a new host)`,
    );
  }
  return owner;
}

/**
 * Writes a new archive's files: the directory, `config` (from `rawConfig`, or kept as it is when null:
 * `init --attach` of an existing config) and, when it is to be the store's archive `owner`, its
 * `archive-id`; then runs `prepare`. On failure it removes what it wrote (no config, no `archive-id`),
 * so that it can be run again with other options.
 */
export async function writeArchiveFiles(
  path: string,
  rawConfig: Record<string, unknown> | null,
  owner: string | null,
  prepare: () => Promise<void>,
): Promise<void> {
  const made = !(await exists(path));
  if (rawConfig != null) {
    try {
      await mkdir(path, { recursive: true, mode: PRIVATE_DIR_MODE });
    } catch (error) {
      throw ioError(error, `creating archive ${path}`);
    }
  }
  const hadId = (await readArchiveId(path)) != null;
  try {
    if (rawConfig != null) await writeFileAtomic(configPath(path), stringify(rawConfig));
    if (owner != null && !hadId) await writeArchiveId(path, owner);
    await prepare();
  } catch (error) {
    if (rawConfig != null) await rm(configPath(path), { force: true }).catch(() => {});
    if (!hadId) await rm(join(path, ARCHIVE_ID_FILE), { force: true }).catch(() => {});
    if (made && rawConfig != null) await rm(path, { recursive: true, force: true }).catch(() => {});
    throw error;
  }
}
