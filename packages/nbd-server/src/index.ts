export {
  archiveExports,
  DEFAULT_EXPORT_SPEC,
  type NbdExportInfo,
  type NbdExportProvider,
  type OpenedExport,
} from './exports.js';
export { NbdServer } from './server.js';
export { type NbdTlsOptions, parsePskKeys } from './tls.js';
export type { NbdServerOptions } from './types.js';
