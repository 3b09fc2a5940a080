import { type ArchiveConfig, archiveConfigSchema as archiveConfig } from './config.js';
import { type RevisionData, revisionSchema as revision } from './revision.js';
import { tagNameSchema as tagName } from './schedule.js';

/**
 * A schema as the host API hands it out: check a value, get it typed or the problems. zod's schemas
 * are such validators; typed as this one, the published declarations do not name zod, so that a zod
 * major is not a backy major.
 */
export interface Validator<T> {
  safeParse(
    value: unknown,
  ):
    | { success: true; data: T }
    | { success: false; error: { issues: readonly { message: string; path: readonly PropertyKey[] }[] } };
}

/** Checks a whole archive config (`<archive>/config`); source and store options are their plugins'. */
export const archiveConfigSchema: Validator<ArchiveConfig> = archiveConfig;
/** Checks one revision file's content, as read from YAML. */
export const revisionSchema: Validator<RevisionData> = revision;
/** Checks a tag name (`daily`, `manual:before-upgrade`). */
export const tagNameSchema: Validator<string> = tagName;
