import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DirectoryBackend } from '../backend/directory.js';
import { type ArchiveConfig, archiveConfigSchema } from '../config.js';
import { BackyError, isBackyError } from '../errors.js';
import { DirectoryChunkStore } from '../repository/chunk-store.js';
import type { StoreDriver, StoreDrivers } from '../store/contract.js';
import { defineStoreDriver, directoryStoreDriver, isStoreDriver } from '../store/drivers.js';
import { layoutFor } from './layouts.js';
import { openStore as openStoreOf } from './open-store.js';

const config = (store: Record<string, unknown>, layout = 'chunked') =>
  archiveConfigSchema.parse({ source: { type: 'file', filename: 'disk.img' }, store, layout });
/** The store of `cfg`, opened as the archive opens it: with its config's layout. */
const openStore = (cfg: ArchiveConfig, ...rest: [string, StoreDrivers, string]) =>
  openStoreOf(cfg, ...rest, layoutFor(cfg.layout));

/** The directory store under another name, recording what it was opened with. */
function renamedDirectory(type: string, opened: unknown[]): StoreDriver<{ path?: string }> {
  return defineStoreDriver({
    type,
    optionsSchema: directoryStoreDriver.optionsSchema,
    open(options, context) {
      opened.push({ options, codec: context.codec });
      return directoryStoreDriver.open(options, context);
    },
  });
}

describe('openStore', () => {
  it('opens the directory store from a table that does not name it, with its path option', async () => {
    const store = await openStore(config({}), '/srv/a', {}, 'cfg');
    expect(store).toBeInstanceOf(DirectoryChunkStore);
    expect(store.root).toBe('/srv/a/chunks');
    const elsewhere = await openStore(config({ type: 'directory', path: '../shared' }), '/srv/a', {}, 'cfg');
    expect(elsewhere.root).toBe('/srv/shared');
  });

  it('asks a resolver function for every type, the directory store included', async () => {
    const asked: string[] = [];
    const opened: unknown[] = [];
    const resolver = async (type: string) => {
      asked.push(type);
      return renamedDirectory(type, opened);
    };
    await openStore(config({}), '/srv/a', resolver, 'cfg');
    const plugin = await openStore(
      config({ type: '/opt/x.mjs', path: join('/srv', 'x'), codec: 'none' }),
      '/srv/a',
      resolver,
      'cfg',
    );
    expect(asked).toEqual(['directory', '/opt/x.mjs']);
    expect(opened).toEqual([
      { options: {}, codec: 'zstd' },
      { options: { path: '/srv/x' }, codec: 'none' },
    ]);
    expect(plugin.root).toBe('/srv/x');
    const refused = new BackyError('STORE_UNKNOWN', 'unknown store type "y"');
    const error = await openStore(
      config({ type: 'y' }),
      '/srv/a',
      () => Promise.reject(refused),
      'cfg',
    ).catch((e: unknown) => e);
    expect(error).toBe(refused);
  });

  it('names the config and key for an unknown type, bad options and a layout only the directory store holds', async () => {
    const message = (promise: Promise<unknown>) =>
      promise.then(
        () => 'opened',
        (e: unknown) => e,
      );
    const unknown = await message(
      openStore(config({ type: 'nope' }), '/srv/a', { s3: renamedDirectory('s3', []) }, 'cfg'),
    );
    expect(isBackyError(unknown, 'CONFIG_INVALID')).toBe(true);
    expect((unknown as Error).message).toBe(
      'cfg: store.type: unknown store type "nope" (known: directory, s3)',
    );
    const drivers = { other: renamedDirectory('other', []) };
    const badOption = await message(
      openStore(config({ type: 'other', colour: 'blue' }), '/srv/a', drivers, 'cfg'),
    );
    expect((badOption as Error).message).toBe('cfg: store: unknown key "colour" (store type other)');
    // The driver's own rules: the key under store., and which store type's driver refused it.
    const bucketed = {
      other: defineStoreDriver({
        type: 'other',
        optionsSchema: z.strictObject({ bucket: z.string() }),
        open: () => new DirectoryBackend('/srv/a/chunks'),
      }),
    };
    const noBucket = await message(openStore(config({ type: 'other' }), '/srv/a', bucketed, 'cfg'));
    expect(isBackyError(noBucket, 'CONFIG_INVALID')).toBe(true);
    expect((noBucket as Error).message).toBe('cfg: store.bucket: required (store type other)');
    const images = await message(openStore(config({ type: 'other' }, 'images'), '/srv/a', drivers, 'cfg'));
    expect((images as Error).message).toMatch(
      /^cfg: layout: images keeps image files .* needs layout: chunked$/,
    );
    expect(await openStore(config({}, 'images'), '/srv/a', drivers, 'cfg')).toBeInstanceOf(
      DirectoryChunkStore,
    );
  });

  it('checks the shape of a driver', () => {
    expect(isStoreDriver(directoryStoreDriver)).toBe(true);
    expect(isStoreDriver({ ...directoryStoreDriver, open: undefined })).toBe(false);
    expect(isStoreDriver({ ...directoryStoreDriver, optionsSchema: { parse() {} } })).toBe(false);
    expect(isStoreDriver(null)).toBe(false);
  });
});
