// Apart from options.ts, so that the main entry's declarations reach this type without the zod schema.

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
