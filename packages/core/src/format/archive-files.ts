// The names of the files in an archive directory (and of a revision's files in a remote store's
// catalog), and the bytes of those that are not a format of their own. Pure: no file system. Every
// other module asks here instead of spelling `.rev`, `.map`, `.pending` or `last.rev`
// (docs/storage.md describes the directory for operators).
import { stringify } from 'yaml';

/**
 * `config`: the archive's YAML config (`archiveConfigSchema` in config.ts; backy 2.x wrote the bare
 * source mapping). Its presence is what makes a directory an archive.
 */
export const CONFIG_FILE = 'config';

/** `backy.log`: the archive's log, one JSON object a line (pino), appended by every command. */
export const LOG_FILE = 'backy.log';

/**
 * `archive-id`: one line, a revision-style ID (22 base57 characters) and a newline, mode 0640. The
 * archive's identity, kept across moves: a store's registry knows archives by it, and a remote store
 * records the ID of the archive whose revisions it holds.
 */
export const ARCHIVE_ID_FILE = 'archive-id';

/**
 * `<id>.rev`: a revision, YAML in block style with its keys in `revisionSchema`'s order (see
 * `revisionText`), mode 0640. Written last, atomically: a revision exists once its `.rev` does, and
 * only with `stats` is it complete. backy 2.x wrote its own keys (`fromLegacyRevision` reads them).
 */
export const REV_SUFFIX = '.rev';

/**
 * `<id>.map`: a revision's chunk map (the format is ChunkMap's, store/chunk-map.ts: a header, one hash
 * or zero marker per chunk, and a SHA-256 checksum the `.rev` records as `map_checksum`). Written before
 * the `.rev`.
 */
export const MAP_SUFFIX = '.map';

/**
 * `<id>.pending`: the pid of the backup (or copy) writing revision `<id>`, and a newline. Written before
 * anything else of that revision and removed after its `.rev`: the proof that files named `<id>` without
 * a `.rev` are backy's own leftovers and may be removed.
 */
export const PENDING_SUFFIX = '.pending';

/**
 * `<id>` (no suffix): the revision's data when it has an image file — the raw image of the `images`
 * layout and of backy 2.0–2.1 (`cowfile`), or backy 2.2–2.5's chunk mapping (`legacy-chunked`).
 */
export function imageFileName(id: string): string {
  return id;
}

/**
 * `last` → `<id>` and `last.rev` → `<id>.rev`: symlinks to the newest revision's image file and `.rev`,
 * as backy 2.x kept them (`dd if=last`); absent when the newest revision has no image file.
 */
export const LAST_LINK = 'last';
export const LAST_REV_LINK = `${LAST_LINK}${REV_SUFFIX}`;

/**
 * `store-stats.json`: what the archive's chunk store held after the last `purge` run in this archive
 * (store-stats.ts: `{format, store, chunks, bytes, referenced_bytes, revisions, archives, updated}`),
 * JSON, mode 0640, written atomically. Only read for metrics; a missing or damaged one means "not known".
 */
export const STORE_STATS_FILE = 'store-stats.json';

/** The two files of a revision that a remote store's catalog keeps too. */
export type RevisionFile = 'rev' | 'map';

export function revFileName(id: string): string {
  return `${id}${REV_SUFFIX}`;
}

export function mapFileName(id: string): string {
  return `${id}${MAP_SUFFIX}`;
}

export function pendingFileName(id: string): string {
  return `${id}${PENDING_SUFFIX}`;
}

/** `<id>.rev` or `<id>.map`, by kind (the catalog's names are the directory's). */
export function revisionFileName(id: string, kind: RevisionFile): string {
  return kind === 'rev' ? revFileName(id) : mapFileName(id);
}

/** `<id>` of `<id><suffix>`; null for other names, dot files (temp files) included. */
function idOf(name: string, suffix: string): string | null {
  if (!name.endsWith(suffix) || name.startsWith('.') || name.length === suffix.length) return null;
  return name.slice(0, -suffix.length);
}

/**
 * The revision ID a `.rev` file name stands for, or null for any other name. `last.rev` is backy 2.x's
 * symlink to the newest `.rev`, not a revision of its own.
 */
export function revisionIdOfRevFile(name: string): string | null {
  return name === LAST_REV_LINK ? null : idOf(name, REV_SUFFIX);
}

/** Whether `name` is a revision's `.rev` file (see `revisionIdOfRevFile`). */
export function isRevisionFileName(name: string): boolean {
  return revisionIdOfRevFile(name) != null;
}

/** The revision ID of a `<id>.map` file name, or null. */
export function revisionIdOfMapFile(name: string): string | null {
  return idOf(name, MAP_SUFFIX);
}

/** The revision ID of a `<id>.pending` marker's name, or null. */
export function revisionIdOfPendingFile(name: string): string | null {
  return idOf(name, PENDING_SUFFIX);
}

/** A revision's `.rev` text, as written to the archive directory and to a remote store. */
export function revisionText(rev: object): string {
  return stringify(rev, { sortMapEntries: false });
}

/** The `.pending` marker's text. */
export function pendingText(pid: number): string {
  return `${pid}\n`;
}
