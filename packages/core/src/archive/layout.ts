// What differs between the ways a revision keeps its data: a `Layout`. One object per `backend_type`
// (layouts.ts is the registry, the one place that maps the name to it); every other module asks the
// revision's or the config's layout instead of comparing names.
import type { Logger } from 'pino';
import type { ArchiveConfig } from '../config.js';
import type { RevisionData } from '../revision.js';
import type { RevisionReader, RevisionWriter } from '../revision-io.js';
import type { ChunkMap } from '../store/chunk-map.js';
import type { ArchiveParts } from './paths.js';

/** A revision's `backend_type`: the layouts backy writes (`ConfigLayoutName`) and backy 2.x's. */
export type LayoutName = RevisionData['backend_type'];
/** The layouts an archive's config can name, the ones new revisions are written in. */
export type ConfigLayoutName = ArchiveConfig['layout'];

/** A writer for a new revision, whatever the layout: seal makes it durable, abort leaves nothing. */
export interface LayoutWriter extends RevisionWriter {
  /** Hashes of the chunks this backup wrote anew (what a source's quick verification reads back). */
  readonly freshChunks: ReadonlySet<string>;
  /** Makes the data durable; resolves with the new revision's map (the archive writes the `.map`). */
  seal(): Promise<ChunkMap>;
  abort(): Promise<void>;
}

/** Why a backy 2.x revision's size cannot be read from its data; `missing`: its file is not there. */
export interface DataProblem {
  problem: string;
  missing: boolean;
}

/** How revisions of one `backend_type` keep their data: what reading, listing and purging ask. */
export interface Layout {
  readonly name: LayoutName;
  /** How `upgrade` and `status` call it. */
  readonly title: string;
  /** backy 2.x's: read in place, only trust and tags change (in 2.x's own text) until `upgrade`. */
  readonly legacy: boolean;
  /** Its data is the image file `<id>` in the archive (what `last` points at, what `find` prints). */
  readonly imageFile: boolean;
  /**
   * Its chunks are in the archive's chunk store: readers hold the store's shared lock, purge keeps them,
   * a remote store's catalog keeps its `.map`, and a new revision names only chunks the store holds.
   */
  readonly chunkStore: boolean;
  /** It has a `.map` of its own, bound to its `.rev` by `map_checksum`. */
  readonly mapFile: boolean;
  /** Opens revision `rev` for reading (with the store's shared lock where `chunkStore`, until `close`). */
  openReader(archive: ArchiveParts, rev: RevisionData): Promise<RevisionReader>;
  /**
   * The key under which `verify` reads a chunk once for all revisions: the hash where revisions share
   * their chunks, the revision and the hash where each holds its own copy.
   */
  verifyKey(id: string, hash: string): string;
  /** The size of a revision whose `.rev` does not record it (backy 2.x's), from its data. */
  dataSize?(dir: string, id: string): Promise<number | DataProblem>;
  /** The backy 2.x chunk files (by hash, under `chunks/`) revision `id` reads. */
  legacyChunks?(dir: string, id: string): Promise<Iterable<string>>;
}

/** A layout new revisions are written in (`layout` in the archive's config). */
export interface ConfigLayout extends Layout {
  readonly name: ConfigLayoutName;
  /** A reader over new revision `id`'s sealed `map` (before it is committed). */
  reader(archive: ArchiveParts, id: string, map: ChunkMap): RevisionReader;
  /** The writer of new revision `id`, starting as a copy of `parent` or empty for a full backup. */
  openWriter(
    archive: ArchiveParts,
    id: string,
    parent: { revision: RevisionData; map: ChunkMap } | null,
    options: { rewrite?: boolean; logger?: Logger },
  ): Promise<LayoutWriter>;
  /**
   * Writes a backy 2.x revision's data (in layout `from`, read by `legacy`) in this layout, for
   * `upgrade`; resolves with its map (the archive writes the `.map`) and a reader of the converted data.
   * Commits nothing.
   */
  convert(
    archive: ArchiveParts,
    rev: RevisionData,
    from: Layout,
    legacy: RevisionReader,
    onBytes: (bytes: number) => void,
  ): Promise<{ map: ChunkMap; newReader: RevisionReader }>;
  /** Warnings about this layout on the archive's file system. */
  warnings(dir: string): Promise<string[]>;
}
