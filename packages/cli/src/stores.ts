import type { StoreDrivers } from '@backy/core';

/**
 * The store drivers besides the local directory: `store: {type: s3, …}` in an archive config. Loaded
 * when an archive uses one: importing the S3 driver (the AWS SDK) cost every command ~45 MB of RSS
 * (`backy status` 91 MB) and ~0.2 s of CPU.
 */
export const STORE_DRIVERS: StoreDrivers = {
  s3: () => import('@backy/store-s3').then((m) => m.s3StoreDriver),
};
