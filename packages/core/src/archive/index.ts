// The archive: the only code that lists, reads and commits revisions (format/ says their names and bytes).
export { Archive, type ArchiveOptions, type InitOptions } from './archive.js';
export { readRevisionFacts, readRevisions, scanRevisionFacts } from './facts.js';
export { readArchiveId } from './identity.js';
export type { ArchiveScan, DamagedRevision } from './scan.js';
export { isCommitUncertain, type LayoutWriter, RevisionTransaction } from './transaction.js';
