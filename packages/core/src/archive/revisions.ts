// Changing and removing committed revisions (tags, trust, forget, expire), and with a remote store
// keeping the directory's copies in step with the store's catalog.
import { rm } from 'node:fs/promises';
import { BackyError } from '../errors.js';
import { revisionText } from '../format/archive-files.js';
import { fsyncDir, writeFileAtomic } from '../fs-util.js';
import { legacyRevisionText } from '../legacy/rev-file.js';
import { isComplete, isProtected, type Revision, type RevisionData, readRevisionFile } from '../revision.js';
import { layoutOf } from './layouts.js';
import { lastLinks } from './links.js';
import { isRetained } from './object-lock.js';
import { imagePath, mapPath, revPath } from './paths.js';
import { scanArchive } from './scan.js';
import type { TransactionParts } from './transaction.js';

/**
 * Changes one revision's `.rev` as it is on disk now (so concurrent changes of other fields are not
 * lost), with the revisions lock held. Returns the new revision, or null when the revision no longer
 * exists (it is never recreated). `refetch`: once, when the store's copy moved on.
 */
export async function updateStored(
  archive: TransactionParts,
  id: string,
  change: (rev: Revision) => Revision,
  refetch = true,
): Promise<Revision | null> {
  const file = revPath(archive.path, id);
  let current: RevisionData;
  try {
    current = await readRevisionFile(file);
  } catch (error) {
    if (((error as Error).cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return null;
    throw error;
  }
  if (!isComplete(current)) return null;
  const mirror = archive.mirror;
  if (mirror != null && !(await mirror.current(id))) {
    // The store's copy changed or went (another host forgot or retagged it) since this directory
    // fetched it: never write a stale copy over it. Fetch again and change what is there now.
    if (!refetch)
      throw new BackyError(
        'LOCKED',
        `revision ${id} is being changed in ${archive.store.root} by another host; try again`,
      );
    await mirror.pull();
    return updateStored(archive, id, change, false);
  }
  const next = change(current);
  // A backy 2.x revision stays readable by 2.x until `upgrade` converts it (which changes its type).
  const bytes = Buffer.from(
    layoutOf(current).legacy && layoutOf(next) === layoutOf(current)
      ? await legacyRevisionText(file, current, next)
      : revisionText(next),
  );
  // A new version of a retained `.rev` is retained as long (the old one stays retained anyway).
  const until = next.retention == null ? Number.NaN : Date.parse(next.retention.until);
  const keep = archive.store.objectLock != null && until > Date.now() ? until : undefined;
  const version = await mirror?.push(id, bytes, false, keep);
  await writeFileAtomic(file, bytes, { mode: 0o640 });
  if (version != null) await mirror!.recorded(id, version);
  return next;
}

/**
 * Deletes a revision, with the revisions lock held: the `.rev` first (so it disappears at once), then
 * its map and image file.
 */
export async function deleteRevisionFiles(archive: TransactionParts, id: string): Promise<void> {
  const { path: dir, mirror } = archive;
  // Another host may have protected it in the store meanwhile: judge the store's copy, not an old one.
  if (mirror != null && !(await mirror.current(id))) await mirror.pull();
  const current = await readRevisionFile(revPath(dir, id)).catch(() => null);
  if (current != null && isProtected(current))
    throw new BackyError(
      'REVISION_PROTECTED',
      `revision ${id} is protected: \`backy unprotect -r ${id}\` first if it really is to go`,
    );
  if (current != null && isRetained(current))
    throw new BackyError(
      'RETAINED',
      `revision ${id} is retained by the store's Object Lock until ${current.retention!.until} (${current.retention!.mode} mode): it cannot be removed before then`,
    );
  await mirror?.remove(id);
  await rm(revPath(dir, id), { force: true });
  await rm(mapPath(dir, id), { force: true });
  await rm(imagePath(dir, id), { force: true });
  await fsyncDir(dir);
  await mirror?.forget(id);
  await lastLinks.update(dir, (await scanArchive(dir)).complete.at(-1) ?? null);
}
