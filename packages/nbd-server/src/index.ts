export {
  archiveExports,
  DEFAULT_EXPORT_SPEC,
  type NbdExportInfo,
  type NbdExportProvider,
  type OpenedExport,
} from './exports.js';
export { NbdServer, type NbdServerOptions } from './server.js';
export { type NbdTlsOptions, parsePskKeys } from './tls.js';
