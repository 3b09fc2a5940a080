// Listing an archive directory: its complete revisions, and what else is there (damaged `.rev` files,
// interrupted backups, files backy cannot place), and removing what is provably an interrupted
// backup's.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ioError } from '../errors.js';
import {
  REV_SUFFIX,
  revisionIdOfMapFile,
  revisionIdOfPendingFile,
  revisionIdOfRevFile,
} from '../format/archive-files.js';
import { exists, fsyncDir, isTempName, mayExist } from '../fs-util.js';
import { isRevisionId } from '../ids.js';
import { isComplete, type Revision, type RevisionData, readRevisionFile } from '../revision.js';
import { layoutOf } from './layouts.js';
import { lastLinks } from './links.js';
import { withRevisionsLock } from './locks.js';
import { imagePath, mapPath, pendingPath, revPath } from './paths.js';

/** A `.rev` that does not parse or validate: shown, kept with its data, never used. */
export interface DamagedRevision {
  id: string;
  file: string;
  problem: string;
}

export interface ArchiveScan {
  /** Complete revisions, oldest first. */
  complete: Revision[];
  /** `.rev` files backy cannot read; their maps and image files stay, and purge keeps their chunks. */
  damaged: DamagedRevision[];
  /** Revisions a backup started (its `.pending` marker is there) and never committed. */
  interrupted: string[];
  /** Maps and image files without a `.rev` and without backy's marker: not provably leftovers, kept. */
  orphans: string[];
}

export async function scanArchive(dir: string): Promise<ArchiveScan> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    throw ioError(error, `reading archive ${dir}`);
  }
  const complete: Revision[] = [];
  const damaged: DamagedRevision[] = [];
  const revIds = new Set<string>();
  for (const name of names) {
    const id = revisionIdOfRevFile(name);
    if (id == null) continue;
    revIds.add(id);
    const found = await readScanned(dir, id);
    if (found == null) continue;
    if ('problem' in found) damaged.push(found);
    else complete.push(found);
  }
  const interrupted = names
    .map(revisionIdOfPendingFile)
    .filter((id): id is string => id != null && !revIds.has(id))
    .sort();
  const pending = new Set(interrupted);
  const orphans: string[] = [];
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const id = revisionIdOfMapFile(name) ?? (isRevisionId(name) ? name : null);
    if (id == null || revIds.has(id) || pending.has(id)) continue;
    orphans.push(name);
  }
  complete.sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || a.uuid.localeCompare(b.uuid));
  damaged.sort((a, b) => a.id.localeCompare(b.id));
  return { complete, damaged, interrupted, orphans: orphans.sort() };
}

/**
 * The revision `<id>.rev` in `dir` describes: complete, damaged, or null when it went meanwhile
 * (forgotten or expired by another command, not damaged; a dangling symlink is still listed).
 */
async function readScanned(dir: string, id: string): Promise<Revision | DamagedRevision | null> {
  const file = revPath(dir, id);
  let data: RevisionData;
  try {
    data = await readRevisionFile(file);
  } catch (error) {
    if (!(await mayExist(file))) return null;
    return { id, file, problem: describeProblem(error, file) };
  }
  if (data.uuid !== id) return { id, file, problem: `its uuid is ${JSON.stringify(data.uuid)}` };
  if (!isComplete(data)) return { id, file, problem: 'it has no stats (not a complete revision)' };
  // A backy 2.x revision: its size is its data's (the image file, or the chunk mapping `<id>`).
  const size = await layoutOf(data).dataSize?.(dir, id);
  if (size == null) return data;
  if (typeof size === 'number') return { ...data, size };
  if (size.missing && !(await mayExist(file))) return null;
  return { id, file, problem: size.problem };
}

function describeProblem(error: unknown, file: string): string {
  const message = (error as Error).message ?? String(error);
  return message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message;
}

/** One line for each thing in the archive that needs an operator's eye (damaged `.rev`, orphans). */
export function describeScan(scan: ArchiveScan): string[] {
  return [
    ...scan.damaged.map(
      (d) =>
        `damaged revision ${d.id}: ${d.file}: ${d.problem} (kept with its data; fix or remove the file by hand)`,
    ),
    ...scan.orphans.map(
      (name) => `unknown file ${name}: no ${REV_SUFFIX} belongs to it (kept, and its chunks stay referenced)`,
    ),
  ];
}

/**
 * Removes what interrupted backups left, and only that: the files of revisions whose `.pending`
 * marker is there without a `.rev`, and backy's own temp files. Anything else it does not understand
 * stays (see `describeScan`). Call with the backup lock held. Returns the removed revision IDs.
 */
export async function cleanupArchive(dir: string, logger?: Logger): Promise<string[]> {
  return withRevisionsLock(dir, async () => {
    const { interrupted, complete } = await scanArchive(dir);
    for (const id of interrupted) {
      logger?.warn({ revision: id }, 'removing a revision an interrupted backup left');
      await rm(mapPath(dir, id), { force: true });
      await rm(imagePath(dir, id), { force: true });
      await rm(pendingPath(dir, id), { force: true });
    }
    for (const name of await readdir(dir)) {
      if (isTempName(name)) {
        await rm(join(dir, name), { force: true });
        continue;
      }
      // A marker left after its .rev was written (a crash between the two).
      const id = revisionIdOfPendingFile(name);
      if (id != null && (await exists(revPath(dir, id)))) await rm(join(dir, name), { force: true });
    }
    if (interrupted.length > 0) await fsyncDir(dir);
    await lastLinks.update(dir, complete.at(-1) ?? null);
    return interrupted;
  });
}
