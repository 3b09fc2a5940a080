import { type Archive, formatBytes, type Revision, type RevisionReader } from '@backy/core';

export interface NbdExportInfo {
  /** The name a client can ask for (a revision ID in the list). */
  name: string;
  description: string;
  size: number;
}

export interface OpenedExport extends NbdExportInfo {
  reader: RevisionReader;
  /** Releases what `open` took (the reader, a store lock). */
  release(): Promise<void>;
}

/** Where the NBD server gets its exports from. Names are resolved whenever a client asks for one. */
export interface NbdExportProvider {
  /** The exports NBD_OPT_LIST shows. */
  list(): Promise<NbdExportInfo[]>;
  /** Facts about one export without opening it; throws (e.g. REVISION_NOT_FOUND) for unknown names. */
  describe(name: string): Promise<NbdExportInfo>;
  open(name: string): Promise<OpenedExport>;
}

/** The spec an empty export name (the protocol's "default export") stands for. */
export const DEFAULT_EXPORT_SPEC = 'last';

function describeRevision(rev: Revision): string {
  const tags = rev.tags.length > 0 ? rev.tags.join(',') : '-';
  return `tags: ${tags}; ${rev.timestamp}; ${formatBytes(rev.size)}; ${rev.trust}`;
}

/** Exports the revisions of an archive; an export name is any revision spec (`last`, `0`, a tag, an ID). */
export function archiveExports(archive: Archive): NbdExportProvider {
  const resolve = async (name: string): Promise<Revision> =>
    archive.resolveOne(name === '' ? DEFAULT_EXPORT_SPEC : name);
  return {
    async list() {
      const revisions = await archive.revisions();
      return revisions
        .slice()
        .reverse()
        .map((rev) => ({ name: rev.uuid, description: describeRevision(rev), size: rev.size }));
    },
    async describe(name) {
      const rev = await resolve(name);
      return { name: rev.uuid, description: describeRevision(rev), size: rev.size };
    },
    async open(name) {
      const rev = await resolve(name);
      // The reader holds the store's shared lock until it is closed.
      const reader = await archive.openReader(rev);
      return {
        name: rev.uuid,
        description: describeRevision(rev),
        size: reader.size,
        reader,
        release: () => reader.close(),
      };
    },
  };
}
