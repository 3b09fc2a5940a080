import { join } from 'node:path';
import { exists, writeFileAtomic } from './fs-util.js';

/**
 * Written into an archive when its first revision is committed, and never removed by backy: it tells
 * `backy check` that an archive without revisions lost its history (a `forget -r all`, a deleted
 * directory's contents) rather than waiting for its first backup. Remove it by hand to start over.
 */
export const HISTORY_FILE = 'history-started';

/** Records that the archive at `dir` has had revisions, unless it is recorded already. */
export async function recordHistoryStarted(
  dir: string,
  first: { uuid: string; timestamp: string },
): Promise<void> {
  const path = join(dir, HISTORY_FILE);
  if (await exists(path)) return;
  await writeFileAtomic(path, `first revision ${first.uuid} at ${first.timestamp}\n`);
}
