/**
 * `@backy/store-s3`: the store driver for S3-compatible object storage. `store: {type: s3, endpoint,
 * bucket, prefix, region, credentials-file}` in an archive config; the CLI wires it in.
 */
import { resolve } from 'node:path';
import type { StoreDriver } from '@backy/core/store';
import { S3Objects } from './objects.js';
import { type S3Options, s3OptionsSchema } from './options.js';
import { S3ChunkStore } from './s3-store.js';

export { LEASE_MS } from './leases.js';
export { type S3Options, s3OptionsSchema } from './options.js';
export { S3ChunkStore } from './s3-store.js';

export const s3StoreDriver: StoreDriver<S3Options> = {
  type: 's3',
  optionsSchema: s3OptionsSchema,
  open(options, context) {
    const file = options['credentials-file'];
    const objects = new S3Objects(options, file == null ? null : resolve(context.archiveDir, file));
    return new S3ChunkStore(objects, context.codec);
  },
};
