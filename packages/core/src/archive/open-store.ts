import { resolve } from 'node:path';
import type { Backend } from '../backend/contract.js';
import { DirectoryBackend } from '../backend/directory.js';
import type { ArchiveConfig } from '../config.js';
import { BackyError } from '../errors.js';
import { DirectoryChunkStore } from '../repository/chunk-store.js';
import { Repository } from '../repository/repository.js';
import type { CodecName } from '../store/codec.js';
import type { ChunkStore, StoreDriver, StoreDrivers, StoreDriverTable } from '../store/contract.js';
import { directoryStoreDriver } from '../store/drivers.js';
import { loadStoreKey, type StoreKey } from '../store/key-file.js';
import { validateStoreOptions } from '../store/options.js';

/** What the store needs to know of the archive's layout (archive/layout.ts). */
export interface StoreLayout {
  /** Revisions are image files in the archive directory: unencrypted, and only beside a directory store. */
  readonly imageFile: boolean;
}

/**
 * The chunk store an archive's config names: the driver of `store.type` (the built-in `directory`, or one
 * the host provides: `s3`, a plugin's) opens its backend, with its options checked by the driver's
 * schema. Errors name the config file and the key path.
 */
export async function openStore(
  config: ArchiveConfig,
  archiveDir: string,
  drivers: StoreDrivers,
  where: string,
  layout: StoreLayout,
  options: { admin?: boolean } = {},
): Promise<ChunkStore> {
  const { codec, encryption } = config.store;
  const key = encryption == null ? null : await openKey(config, layout, archiveDir, where);
  // Compression, encryption, checks and locks are the repository's, the same over every backend.
  const backend = await openDriver(config, layout, archiveDir, drivers, where, codec, options.admin ?? false);
  return backend instanceof DirectoryBackend && backend.capabilities.localPath != null
    ? new DirectoryChunkStore(backend.location, { codec, key })
    : new Repository(backend, { codec, key });
}

async function openKey(
  config: ArchiveConfig,
  layout: StoreLayout,
  archiveDir: string,
  where: string,
): Promise<StoreKey> {
  const encryption = config.store.encryption!;
  if (layout.imageFile) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${where}: store.encryption: layout ${config.layout} keeps image files in the archive directory, unencrypted; encryption needs layout: chunked`,
    );
  }
  const passphraseFile = encryption['passphrase-file'];
  return loadStoreKey(resolve(archiveDir, encryption['key-file']), {
    where: `${where}: store.encryption.key-file`,
    passphraseFile: passphraseFile == null ? null : resolve(archiveDir, passphraseFile),
  });
}

async function openDriver(
  config: ArchiveConfig,
  layout: StoreLayout,
  archiveDir: string,
  drivers: StoreDrivers,
  where: string,
  codec: CodecName,
  admin: boolean,
): Promise<Backend> {
  const { type, codec: _codec, encryption: _encryption, ...options } = config.store;
  const driver = await driverFor(type, drivers, where);
  // The directory store keeps an images layout's chunks beside its image files; no other store can.
  if (type !== 'directory' && layout.imageFile) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${where}: layout: ${config.layout} keeps image files in the archive directory; a store of type ${type} needs layout: chunked`,
    );
  }
  const valid = await validateStoreOptions(driver, options, where);
  return driver.open(valid, { archiveDir, where, codec, ...(admin ? { admin } : {}) });
}

/**
 * The driver of `store.type`: from the host's resolver (which throws its own error for a type it cannot
 * load), or from its table, where `directory` is built in.
 */
async function driverFor(type: string, drivers: StoreDrivers, where: string): Promise<StoreDriver<unknown>> {
  if (typeof drivers === 'function') return drivers(type);
  const table: StoreDriverTable = { directory: directoryStoreDriver, ...drivers };
  const entry = Object.hasOwn(table, type) ? table[type] : undefined;
  const driver = typeof entry === 'function' ? await entry() : entry;
  if (driver == null) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${where}: store.type: unknown store type ${JSON.stringify(type)} (known: ${Object.keys(table).join(', ')})`,
    );
  }
  return driver;
}
