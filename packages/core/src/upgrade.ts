import { readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { convertLegacy } from './archive/convert.js';
import { type Archive, layoutFor, layoutOf } from './archive/index.js';
import { legacyChunksDir } from './archive/layout-backy2.js';
import { lastLinks } from './archive/links.js';
import { BackyError } from './errors.js';
import type { Lock } from './lock.js';
import type { Revision } from './revision.js';

export interface UpgradeStep {
  uuid: string;
  from: 'cowfile' | 'legacy-chunked';
  to: 'chunked' | 'images';
  /**
   * `distrusted`: not converted, its 2.x files kept. Its data is in doubt: converting it would carry the
   * doubt into the new layout and delete the 2.x files that are the only evidence (`verify` trusts it
   * again if it reads completely; `forget` removes it).
   */
  skipped?: 'distrusted';
}

export interface UpgradeResult {
  steps: UpgradeStep[];
  /** backy 2.x chunk files removed because no 2.x revision uses them any more. */
  legacyChunksRemoved: number;
}

export interface UpgradeOptions {
  logger: Logger;
  dryRun?: boolean;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

const isLegacy = (r: Revision): r is Revision & { backend_type: 'cowfile' | 'legacy-chunked' } =>
  layoutOf(r).legacy;

/**
 * Converts the backy 2.x revisions of an archive into the configured layout, newest first (as backy
 * 2.5's `upgrade`). For each: the new data is written (chunks and map, or for a 2.0–2.1 image kept as
 * the `images` layout's image, just its map), read back and compared with the 2.x data chunk by chunk,
 * and only then is its `.rev` rewritten (the commit point) and the 2.x file removed. A crash anywhere
 * leaves the 2.x revision as it was, or converted; running it again goes on where it stopped. 2.x chunk
 * files go once no 2.x revision uses them. Holds the archive's backup lock and the store's shared lock.
 */
export async function upgradeArchive(archive: Archive, options: UpgradeOptions): Promise<UpgradeResult> {
  const { logger } = options;
  const locks: Lock[] = [];
  try {
    locks.push(await archive.lockBackup());
    if (!options.dryRun) {
      await archive.prepareStore();
      locks.push(await archive.store.lock('shared'));
    }
    const to = archive.config.layout;
    const all = await archive.revisions();
    const legacy = all.filter(isLegacy).reverse();
    const steps: UpgradeStep[] = legacy.map((r) => ({
      uuid: r.uuid,
      from: r.backend_type,
      to,
      ...(r.trust === 'distrusted' ? { skipped: 'distrusted' as const } : {}),
    }));
    if (options.dryRun) {
      return { steps, legacyChunksRemoved: (await unusedLegacyChunks(archive)).length };
    }
    // What a crash after a commit left: the 2.x file of a revision converted into the chunk store.
    for (const rev of all) {
      if (layoutOf(rev).chunkStore && rev.source_info?.upgraded_from != null)
        await rm(archive.imagePath(rev.uuid), { force: true });
    }
    const convert = legacy.filter((r) => r.trust !== 'distrusted');
    for (const rev of legacy.filter((r) => r.trust === 'distrusted'))
      logger.warn(
        { revision: rev.uuid },
        'distrusted backy 2.x revision not upgraded: its 2.x files are kept',
      );
    const total = convert.reduce((sum, r) => sum + r.size, 0);
    let done = 0;
    for (const rev of convert) {
      options.signal?.throwIfAborted();
      const log = logger.child({ revision: rev.uuid });
      log.info({ from: rev.backend_type, to }, 'upgrading a backy 2.x revision');
      const oldReader = await archive.openReader(rev);
      let converted: Revision | null;
      try {
        const { map, newReader } = await convertLegacy(archive, rev, oldReader, (bytes) => {
          done += bytes;
          options.onProgress?.(done, total);
        });
        try {
          // Read the new revision back and compare it with the 2.x data before anything 2.x goes.
          for (let i = 0; i < newReader.chunkCount; i++) {
            options.signal?.throwIfAborted();
            const [a, b] = await Promise.all([oldReader.read(i), newReader.read(i)]);
            if (!a.equals(b)) {
              throw new BackyError(
                'VERIFY_FAILED',
                `upgrade of ${rev.uuid} stopped: chunk ${i} of the converted revision differs from the backy 2.x data; the 2.x revision is unchanged`,
              );
            }
          }
        } finally {
          await newReader.close();
        }
        converted = await archive.updateRevision(rev.uuid, (current) => ({
          ...current,
          backend_type: to,
          size: map.size,
          map_checksum: map.checksum ?? undefined,
          source_info: { ...current.source_info, upgraded_from: rev.backend_type },
        }));
      } finally {
        await oldReader.close();
      }
      if (converted == null) continue; // forgotten meanwhile
      if (!layoutFor(to).imageFile) await rm(archive.imagePath(rev.uuid), { force: true });
      log.info({ to }, 'backy 2.x revision upgraded and verified');
    }
    await lastLinks.update(archive.path, (await archive.revisions()).at(-1) ?? null);
    const unused = await unusedLegacyChunks(archive);
    for (const path of unused) await rm(path, { force: true });
    await removeEmptyLegacyDirs(legacyChunksDir(archive.path));
    logger.info({ revisions: steps.length, legacyChunksRemoved: unused.length }, 'upgrade completed');
    return { steps, legacyChunksRemoved: unused.length };
  } finally {
    for (const lock of locks.reverse()) await lock.release();
  }
}

/** backy 2.x chunk files (`<32 hex>.chunk.lzo`) that no remaining 2.x revision's mapping names. */
async function unusedLegacyChunks(archive: Archive): Promise<string[]> {
  const scan = await archive.scan();
  // A damaged 2.x .rev may still need its chunks: while there is one, nothing 2.x is removed.
  if (scan.damaged.length > 0) return [];
  const used = new Set<string>();
  for (const rev of scan.complete) {
    for (const hash of (await layoutOf(rev).legacyChunks?.(archive.path, rev.uuid)) ?? []) used.add(hash);
  }
  const out: string[] = [];
  const chunks = legacyChunksDir(archive.path);
  const walk = async (dir: string, depth: number) => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, entry.name);
      if (entry.isDirectory() && /^[0-9a-f]{2}$/.test(entry.name) && depth < 2) await walk(path, depth + 1);
      else if (entry.isFile()) {
        const m = /^([0-9a-f]{32})\.chunk\.lzo$/.exec(entry.name);
        if (m != null && !used.has(m[1]!)) out.push(path);
      }
    }
  };
  await walk(chunks, 0);
  return out;
}

/** Removes the v1 store's now empty `xx/yy` directories; the v2 fan directories are shared with ours. */
async function removeEmptyLegacyDirs(chunks: string): Promise<void> {
  for (const fan of await readdir(chunks).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{2}$/.test(fan)) continue;
    for (const sub of await readdir(join(chunks, fan)).catch(() => [] as string[])) {
      if (/^[0-9a-f]{2}$/.test(sub)) await rmdir(join(chunks, fan, sub)).catch(() => {});
    }
  }
}
