/**
 * `@backy/source-nbd`: the `nbd` source (any NBD export) as the default export; the `qcow2` source
 * (an image file served by a private qemu-nbd, with backy-managed dirty bitmaps) is
 * `@backy/source-nbd/qcow2`. `backupExport`/`verifyExport` read any NBD export into a revision, for
 * sources that set up the export themselves (`@backy/source-qemu`).
 */
import { nbdSource } from './nbd-source.js';

export { describeAddress, type NbdAddress, parseNbdUrl } from './address.js';
export { type Extent, NbdClient } from './client.js';
export {
  type BackupRun,
  backupExport,
  dirtyBitmapContext,
  type ExportBackupPlan,
  type SampleHooks,
  verifyExport,
} from './export-backup.js';
export { createNbdSource, type NbdSourceOptions } from './nbd-source.js';
export default nbdSource;
