import type { Logger } from 'pino';
import type { Archive } from './archive/index.js';
import { type ExpiryAction, planExpiry } from './schedule.js';

/**
 * Applies the schedule's keep rules to the archive now. Holds the archive's backup lock. With `dryRun`
 * it only returns what it would do (and takes no lock, so it works while a backup runs).
 */
export async function expireArchive(
  archive: Archive,
  options: { logger: Logger; now?: Date; dryRun?: boolean },
): Promise<ExpiryAction[]> {
  if (options.dryRun) {
    return planExpiry(await archive.revisions(), archive.config.schedule, options.now ?? new Date());
  }
  const lock = await archive.lockBackup();
  try {
    const revisions = await archive.revisions();
    const actions = planExpiry(revisions, archive.config.schedule, options.now ?? new Date());
    const byId = new Map(revisions.map((r) => [r.uuid, r]));
    for (const action of actions) {
      const rev = byId.get(action.uuid)!;
      if (action.remove) {
        options.logger.info({ revision: rev.uuid, tags: rev.tags }, 'expired: revision removed');
        await archive.deleteRevision(rev.uuid);
      } else if (action.removeTags.length > 0) {
        options.logger.info({ revision: rev.uuid, removed: action.removeTags }, 'expired tags');
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
