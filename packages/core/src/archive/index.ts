// The archive: the only code that lists, reads and commits revisions (format/ says their names and bytes).
export { Archive, type ArchiveOptions, type InitOptions } from './archive.js';
export { readRevisionFacts, readRevisions, scanRevisionFacts } from './facts.js';
export { readArchiveId } from './identity.js';
export type { ConfigLayout, ConfigLayoutName, Layout, LayoutName, LayoutWriter } from './layout.js';
export { isConfigLayoutName, layoutFor, layoutOf } from './layouts.js';
export { isRetained, keepHorizon } from './object-lock.js';
export type { ArchiveScan, DamagedRevision } from './scan.js';
export { isCommitUncertain, RevisionTransaction } from './transaction.js';
