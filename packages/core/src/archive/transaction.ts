// A new revision as a transaction: `begin` marks it pending, then a writer (a backup's) or a map (a
// copy's) fills it, and `commit` makes it exist or `abort` leaves nothing of it visible. Crash-safe in
// this order: marker, data, map, `.rev`; the next clean-up removes what a crash left (scan.ts).
import { lstat, rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { BackyError } from '../errors.js';
import { pendingText, revisionText } from '../format/archive-files.js';
import { mayExist, writeFileAtomic } from '../fs-util.js';
import { type RevisionData, writeRevisionFile } from '../revision.js';
import type { RevisionReader } from '../revision-io.js';
import type { ChunkMap } from '../store/chunk-map.js';
import type { CatalogMirror } from './catalog-mirror.js';
import type { LayoutWriter } from './layout.js';
import { layoutFor, layoutOf } from './layouts.js';
import { lastLinks } from './links.js';
import { withRevisionsLock } from './locks.js';
import { saveMap } from './maps.js';
import { type RetainedParent, retainChunks, retainedParent, retainUntilOf } from './object-lock.js';
import { type ArchiveParts, imagePath, mapPath, pendingPath, revPath } from './paths.js';
import { scanArchive } from './scan.js';

/** The archive's parts a transaction needs: with a remote store, the mirror of its catalog too. */
export interface TransactionParts extends ArchiveParts {
  readonly mirror: CatalogMirror | null;
}

export class RevisionTransaction {
  private writer: LayoutWriter | null = null;
  /** Whether the commit began to put the `.rev` into a remote store (it may be there). */
  private pushed = false;
  /** The new revision's map, once written (Object Lock retains its chunks before the commit). */
  private map: ChunkMap | null = null;
  private parent: RetainedParent | null = null;

  private constructor(
    private readonly archive: TransactionParts,
    /** The new revision's ID. */
    readonly id: string,
  ) {}

  /** Marks revision `id` as started: from now on its files are provably this transaction's own. */
  static async begin(archive: TransactionParts, id: string): Promise<RevisionTransaction> {
    await writeFileAtomic(pendingPath(archive.path, id), pendingText(process.pid), { mode: 0o640 });
    return new RevisionTransaction(archive, id);
  }

  /**
   * Opens the writer of the new revision in the configured layout, starting as a copy of `parent` (from
   * `usableParent`) or empty for a full backup; `parentReader` reads the parent.
   */
  async openWriter(
    parent: { revision: RevisionData; map: ChunkMap } | null,
    options: { rewrite?: boolean; logger?: Logger } = {},
  ): Promise<{ writer: LayoutWriter; parentReader: RevisionReader | null }> {
    const parts = this.archive;
    const parentReader =
      parent != null ? layoutFor(parts.config.layout).reader(parts, parent.revision.uuid, parent.map) : null;
    const writer = await layoutFor(parts.config.layout).openWriter(parts, this.id, parent, options);
    this.parent = retainedParent(parent);
    // The map is the archive's to write: once the layout's data is durable, before the `.rev`.
    const seal = writer.seal.bind(writer);
    writer.seal = async () => {
      const map = await seal();
      await this.saveMap(map);
      return map;
    };
    this.writer = writer;
    return { writer, parentReader };
  }

  /** A reader of the new revision's sealed `map` (for the source's verification before the commit). */
  reader(map: ChunkMap): RevisionReader {
    return layoutFor(this.archive.config.layout).reader(this.archive, this.id, map);
  }

  /** Writes the new revision's map as it is (a copy's: its chunks are in the store already). */
  async saveMap(map: ChunkMap): Promise<void> {
    await saveMap(this.archive.path, this.id, map);
    this.map = map;
  }

  /**
   * With Object Lock on the store: the revision with its `retention`, after every chunk it references
   * is retained until then (a reused chunk's retention extended), so deduplication never shortens its
   * protection. Without: as it is (a copy from a locked store drops the record, this store keeps nothing).
   */
  private async retained(rev: RevisionData): Promise<{ rev: RevisionData; until?: number }> {
    const { store, config } = this.archive;
    const lock = store.objectLock ?? null;
    if (lock == null) {
      if (rev.retention == null) return { rev };
      const { retention: _dropped, ...rest } = rev;
      return { rev: rest };
    }
    if (this.map == null) throw new Error(`committing revision ${rev.uuid} with Object Lock before its map`);
    const until = retainUntilOf(rev, lock, config.schedule, config.retention);
    const retention = await retainChunks(store, lock, this.map, until, this.parent);
    return { rev: { ...rev, retention }, until };
  }

  /**
   * Commits the new revision: its `.rev` makes it exist; then its marker goes. The commit point is the
   * store's `.rev` for a remote store, the local `.rev` otherwise. Steps after it that fail (the local
   * copy of a remote `.rev`, the marker's removal, the `last` links, the lock's release) do not undo the
   * revision: they are returned, for warnings, and the next run repairs them. Throws only when the
   * revision was not committed, or with `commitUncertain` set when that cannot be told: its files must
   * then stay as they are. `guard` runs under the revisions lock right before the `.rev` is written
   * (fleet mode's fence check, fence.ts): when it throws, nothing is committed.
   */
  async commit(given: RevisionData, guard?: () => Promise<void>): Promise<unknown[]> {
    if (given.uuid !== this.id)
      throw new Error(`committing revision ${given.uuid} in the transaction of ${this.id}`);
    const { rev, until } = await this.retained(given);
    // The caller's object shows what was committed (its retention too).
    Object.assign(given, rev);
    if (rev.retention == null) delete given.retention;
    const { path: dir, mirror } = this.archive;
    const late: unknown[] = [];
    const afterCommit = (step: () => Promise<unknown>) =>
      step().then(
        () => true,
        (error: unknown) => {
          late.push(error);
          return false;
        },
      );
    let committed = false;
    const revFile = revPath(dir, rev.uuid);
    try {
      await withRevisionsLock(dir, async () => {
        await guard?.();
        // A remote store gets the revision first: it exists once the store has its `.rev`.
        const bytes = Buffer.from(revisionText(rev));
        this.pushed = mirror != null;
        const version = await mirror?.push(rev.uuid, bytes, layoutOf(rev).chunkStore, until);
        if (version != null) {
          committed = true;
          // Recorded only with the local copy there, or a pull would never fetch it.
          if (await afterCommit(() => writeRevisionFile(revFile, rev)))
            await afterCommit(() => mirror!.recorded(rev.uuid, version));
        } else {
          await writeLocalRev(revFile, rev, late);
          committed = true;
        }
        await afterCommit(() => rm(pendingPath(dir, rev.uuid), { force: true }));
        await afterCommit(async () =>
          lastLinks.update(dir, (await scanArchive(dir)).complete.at(-1) ?? null),
        );
      });
    } catch (error) {
      if (!committed) throw error;
      late.push(error);
    }
    return late;
  }

  /**
   * Leaves nothing of the new revision visible, unless it may exist: then nothing is removed. The check
   * comes first, the writer's clean-up (which removes the map) only after it: a commit that failed after
   * its `.rev` was written (locally, or in the store when the answer to its PUT was lost) left a
   * revision whose map and chunks must stay. Otherwise its map, a sealed image file and its marker go.
   * Resolves true when the revision's files are gone (its fresh chunks are then unreferenced), false
   * when they are kept for the next clean-up. Never throws.
   */
  async abort(): Promise<boolean> {
    const dir = this.archive.path;
    const removed = await withRevisionsLock(dir, async () => {
      if (await this.mayBeCommitted()) return false;
      await this.writer?.abort().catch(() => {});
      await rm(mapPath(dir, this.id), { force: true });
      // An image the writer sealed under its final name (a backup refused after `seal`): the marker
      // proves it is this transaction's, and without it the file would stay as an unknown one.
      await rm(imagePath(dir, this.id), { force: true });
      await rm(pendingPath(dir, this.id), { force: true });
      return true;
    }).catch(() => null);
    if (removed != null) return removed;
    // Without the lock the writer's work still stops (and its files go, where the revision certainly
    // does not exist); the marker stays for the next clean-up, and with it the fresh chunks.
    if (!(await this.mayBeCommitted().catch(() => true))) await this.writer?.abort().catch(() => {});
    return false;
  }

  /** Whether the revision's `.rev` may be there: unless certainly absent, locally and in the store. */
  private async mayBeCommitted(): Promise<boolean> {
    if (await mayExist(revPath(this.archive.path, this.id))) return true;
    if (!this.pushed) return false;
    try {
      return (await this.archive.mirror!.catalog.read(this.id, 'rev')) != null;
    } catch {
      return true;
    }
  }
}

/** Writes the `.rev` of a directory store; a failure after which the `.rev` is there goes to `late`. */
async function writeLocalRev(revFile: string, rev: RevisionData, late: unknown[]): Promise<void> {
  try {
    await writeRevisionFile(revFile, rev);
  } catch (error) {
    // Renamed into place but not made durable (the directory's fsync failed): it exists.
    const info = await lstat(revFile).catch((e: NodeJS.ErrnoException) => e);
    if (info instanceof Error && info.code === 'ENOENT') throw error;
    if (info instanceof Error || !info.isFile()) throw uncertainCommit(rev.uuid, error);
    late.push(error);
  }
}

/** The error of a commit whose outcome cannot be told; `isCommitUncertain` recognises it. */
function uncertainCommit(id: string, cause: unknown): BackyError {
  const error = new BackyError(
    'IO',
    `revision ${id} may or may not have been committed (${(cause as Error).message ?? cause}); its files are kept as they are, the next backup sorts them out`,
    { cause },
  );
  Object.defineProperty(error, 'commitUncertain', { value: true });
  return error;
}

/** True for `commit`'s error when it cannot tell whether the revision exists. */
export function isCommitUncertain(error: unknown): boolean {
  return (error as { commitUncertain?: boolean } | null)?.commitUncertain === true;
}
