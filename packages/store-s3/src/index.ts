/**
 * `@backy/store-s3`: the backend for S3-compatible object storage. `store: {type: s3, endpoint, bucket,
 * prefix, region, credentials-file}` in an archive config; the CLI wires it in. The backend only moves
 * bytes: compression, encryption, checks, quarantine, leases and the revision catalog are @backy/core's.
 */
import { resolve } from 'node:path';
import type { StoreDriver } from '@backy/core/store';
import { S3Objects } from './objects.js';
import { type S3Options, s3OptionsSchema } from './options.js';
import { S3Backend } from './s3-backend.js';

export type { S3Options } from './options.js';
export { S3Backend } from './s3-backend.js';

export const s3StoreDriver: StoreDriver<S3Options> = {
  type: 's3',
  optionsSchema: s3OptionsSchema,
  open(options, context) {
    const file = options['credentials-file'];
    return new S3Backend(new S3Objects(options, file == null ? null : resolve(context.archiveDir, file)));
  },
};
