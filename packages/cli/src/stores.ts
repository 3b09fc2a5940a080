import type { StoreDriver } from '@backy/core';
import { directoryStoreDriver, isStoreDriver } from '@backy/core/store';
import { loadPlugin, type PluginKind } from './plugins.js';

/**
 * Store drivers: `store: {type: …}` in an archive config, `init --store type=…`. The S3 driver loads
 * only when an archive uses it: importing it (the AWS SDK) cost every command ~45 MB of RSS (`backy
 * status` 91 MB) and ~0.2 s of CPU.
 */
const STORES: PluginKind<StoreDriver<unknown>> = {
  noun: 'store',
  thing: 'a store driver',
  define: 'defineStoreDriver',
  entry: '@backy/core/store',
  method: 'open',
  unknown: 'STORE_UNKNOWN',
  invalid: 'STORE_INVALID',
  builtins: {
    directory: async () => directoryStoreDriver,
    s3: () => import('@backy/store-s3').then((m) => m.s3StoreDriver),
  },
  is: isStoreDriver,
};

/** The store driver for `type`: a built-in, a package installed beside backy, or a module path. */
export const STORE_DRIVERS = (type: string): Promise<StoreDriver<unknown>> => loadPlugin(STORES, type);
