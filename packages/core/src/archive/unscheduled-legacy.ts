// backy 2.x kept the schedules in /etc/backy.conf and wrote the archive's `config` as the bare source
// mapping, so a 2.x archive used by hand has no schedule: backup accepts any tag, expire removes nothing.
// That is said, not guessed at: the central config may be elsewhere, or name another job.
import { join } from 'node:path';
import type { ArchiveConfig } from '../config.js';
import { CONFIG_FILE } from '../format/archive-files.js';
import type { RevisionData } from '../revision.js';
import { layoutOf } from './layouts.js';

/**
 * One warning line when the archive's config has no schedule and the archive holds backy 2.x revisions,
 * else null. `revisions`: the archive's revisions when the caller has them (read otherwise, and only
 * when the schedule is empty).
 */
export async function unscheduledLegacyWarning(
  archive: {
    path: string;
    config: ArchiveConfig;
    revisions(): Promise<readonly Pick<RevisionData, 'backend_type'>[]>;
  },
  revisions?: readonly Pick<RevisionData, 'backend_type'>[],
): Promise<string | null> {
  if (Object.keys(archive.config.schedule).length > 0) return null;
  if (!(revisions ?? (await archive.revisions())).some((r) => layoutOf(r).legacy)) return null;
  return `${join(archive.path, CONFIG_FILE)} has no schedule (backy 2.x kept it in the central config): backup accepts any tag and expire removes nothing; add \`schedule: {TAG: {interval, keep}}\` to it, or run the job from the scheduler`;
}
