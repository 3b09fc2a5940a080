import { z } from 'zod';

/** The ceph-rbd source's options (`source:` of an archive config with `type: ceph-rbd`). */
export interface RbdSourceOptions {
  /** Ceph pool that holds the image. */
  pool: string;
  /** RBD image to back up. */
  image: string;
  /** Always read the whole image with `rbd export` instead of an incremental export-diff (default false). */
  'full-always': boolean;
  /** ceph.conf for the rbd client (default: rbd's own, /etc/ceph/ceph.conf). */
  conf?: string;
  /** Ceph client id, without `client.` (default: rbd's own, admin). */
  id?: string;
  /** Keyring of the client (default: as configured in ceph.conf). */
  keyring?: string;
}

// The zod schema, for sources that extend these options (@backy/source-flyingcircus): the entry
// `@backy/source-ceph-rbd/options`, apart from the package's main entry, whose declarations do not name
// zod. options.test.ts holds the schema to the type.
const rbdName = (what: string) =>
  z
    .string()
    .min(1)
    .regex(/^[^/@\s]+$/, `${what} name must not contain '/', '@' or white space`);

export const rbdSourceOptions = z.strictObject({
  pool: rbdName('pool'),
  image: rbdName('image'),
  'full-always': z.boolean().default(false),
  conf: z.string().min(1).optional(),
  id: z.string().min(1).optional(),
  keyring: z.string().min(1).optional(),
});
