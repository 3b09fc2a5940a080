/**
 * `@backy/store-s3`: the backend for S3-compatible object storage. `store: {type: s3, endpoint, bucket,
 * prefix, region, credentials-file}` in an archive config; the CLI wires it in. The backend only moves
 * bytes: compression, encryption, checks, quarantine, leases and the revision catalog are @backy/core's.
 */
import { resolve } from 'node:path';
import { BackyError, type StoreDriver } from '@backy/core/store';
import { S3Objects } from './objects.js';
import { type S3Options, s3OptionsSchema } from './options.js';
import { S3Backend } from './s3-backend.js';

export type { S3Options } from './options.js';
export { S3Backend } from './s3-backend.js';

/** The backend, with Object Lock its leases in their own bucket (same endpoint, prefix, credentials). */
function backend(
  options: S3Options,
  credentials: string | null,
  profile: string | undefined,
  admin: boolean,
) {
  const objects = new S3Objects(options, credentials, profile);
  const leaseBucket = options['object-lock']?.['lease-bucket'];
  const leases =
    leaseBucket == null ? objects : new S3Objects({ ...options, bucket: leaseBucket }, credentials, profile);
  return new S3Backend(objects, admin, leases);
}

export const s3StoreDriver: StoreDriver<S3Options> = {
  type: 's3',
  optionsSchema: s3OptionsSchema,
  open(options, context) {
    if (context.admin === true && options['append-only']) {
      // Expire, forget and purge delete: with the admin credentials, which an append-only host has apart.
      const file = options['admin-credentials-file'];
      if (file == null && options['admin-profile'] == null)
        throw new BackyError(
          'APPEND_ONLY',
          `${context.where}: store.append-only: this command deletes and needs the admin credentials; set store.admin-credentials-file (or store.admin-profile), or run it where they are`,
        );
      const path = file == null ? null : resolve(context.archiveDir, file);
      return backend(options, path, options['admin-profile'], true);
    }
    const file = options['credentials-file'];
    return backend(options, file == null ? null : resolve(context.archiveDir, file), undefined, false);
  },
};
