import type { StoreDrivers } from '@backy/core';
import { s3StoreDriver } from '@backy/store-s3';

/** The store drivers besides the local directory: `store: {type: s3, …}` in an archive config. */
export const STORE_DRIVERS: StoreDrivers = { s3: s3StoreDriver };
