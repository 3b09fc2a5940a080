import type { Logger } from 'pino';
import type { Archive } from './archive/index.js';
import { isBackyError } from './errors.js';
import { planArchiveExpiry } from './retention.js';
import type { ExpiryAction } from './schedule.js';

/**
 * Applies the schedule's keep rules to the archive now. Holds the archive's backup lock. With `dryRun`
 * it only returns what it would do (and takes no lock, so it works while a backup runs).
 */
export async function expireArchive(
  archive: Archive,
  options: { logger: Logger; now?: Date; dryRun?: boolean },
): Promise<ExpiryAction[]> {
  if (options.dryRun) {
    return planArchiveExpiry(
      await archive.revisions(),
      archive.config.schedule,
      archive.config.retention,
      options.now ?? new Date(),
    );
  }
  const lock = await archive.lockBackup();
  try {
    const revisions = await archive.revisions();
    const actions = planArchiveExpiry(
      revisions,
      archive.config.schedule,
      archive.config.retention,
      options.now ?? new Date(),
    );
    const byId = new Map(revisions.map((r) => [r.uuid, r]));
    for (const action of actions) {
      const rev = byId.get(action.uuid)!;
      if (action.remove) {
        try {
          await archive.deleteRevision(rev.uuid);
          options.logger.info({ revision: rev.uuid, tags: rev.tags }, 'expired: revision removed');
          continue;
        } catch (error) {
          // Protected in the store by another host since this one listed the revisions, or retained by
          // the store's Object Lock: it stays.
          if (isBackyError(error, 'REVISION_PROTECTED')) action.keptBy = 'protected';
          else if (isBackyError(error, 'RETAINED')) action.keptBy = 'retained';
          else throw error;
          action.remove = false;
        }
      }
      if (action.removeTags.length > 0) {
        const kept = action.keptBy != null ? { kept: action.keptBy } : {};
        options.logger.info({ revision: rev.uuid, removed: action.removeTags, ...kept }, 'expired tags');
        await archive.updateRevision(rev.uuid, (current) => ({
          ...current,
          tags: current.tags.filter((t) => !action.removeTags.includes(t)),
        }));
      }
    }
    return actions;
  } finally {
    await lock.release();
  }
}
