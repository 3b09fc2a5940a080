// The revisions of an archive directory read fast, without opening the archive (no config, no store):
// for the scheduler, which looks at thousands of archives every few seconds. It only reads.
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { revisionIdOfRevFile } from '../format/archive-files.js';
import { HISTORY_FILE } from '../history-record.js';
import { isComplete, type Revision, readRevisionFile } from '../revision.js';
import { parseRevisionFacts, type RevisionFacts } from '../revision-facts.js';

/** Complete revisions of an archive directory, oldest first; a missing directory has none. */
export async function readRevisions(dir: string): Promise<Revision[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const revisions: Revision[] = [];
  for (const name of names) {
    const id = revisionIdOfRevFile(name);
    if (id == null) continue;
    try {
      const data = await readRevisionFile(join(dir, name));
      if (isComplete(data) && data.uuid === id) revisions.push(data);
    } catch {
      // Unreadable or half-written revisions are the CLI's business (`backy status` reports them).
    }
  }
  return revisions.sort(
    (a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || a.uuid.localeCompare(b.uuid),
  );
}

/** Facts of the complete revisions in an archive directory, oldest first; a missing directory has none. */
export async function readRevisionFacts(dir: string): Promise<RevisionFacts[]> {
  return (await scanRevisionFacts(dir)).facts;
}

/** True only when `path` is certainly absent. */
function goneSync(path: string): boolean {
  try {
    return lstatSync(path, { throwIfNoEntry: false }) === undefined;
  } catch {
    return false;
  }
}

/** `readRevisionFacts`, plus the names of `.rev` files that are not complete, valid revisions. */
export async function scanRevisionFacts(
  dir: string,
): Promise<{ facts: RevisionFacts[]; damaged: string[]; historyStarted: boolean }> {
  // Synchronous on purpose: for small files a thread-pool round trip costs more than the read, and an
  // archive's revision files are a few hundred bytes each (10,000 of them: 0.2 s instead of 0.6 s).
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return { facts: [], damaged: [], historyStarted: false };
    throw error;
  }
  const facts: RevisionFacts[] = [];
  const damaged: string[] = [];
  for (const name of names) {
    const id = revisionIdOfRevFile(name);
    if (id == null) continue;
    let text: string;
    try {
      text = readFileSync(join(dir, name), 'utf8');
    } catch {
      // Listed and gone (a dangling symlink is still there): forgotten or expired meanwhile, not damaged.
      if (!goneSync(join(dir, name))) damaged.push(name);
      continue;
    }
    const f = parseRevisionFacts(text);
    if (f != null && f.uuid === id) facts.push(f);
    else damaged.push(name);
  }
  facts.sort((a, b) => a.time - b.time || a.uuid.localeCompare(b.uuid));
  return { facts, damaged: damaged.sort(), historyStarted: names.includes(HISTORY_FILE) };
}
