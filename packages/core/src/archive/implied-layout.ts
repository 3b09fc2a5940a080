// The layout of an archive whose config names none. backy 2.0–2.1 operators restore with
// `dd if=last`; a first backup in the chunked layout would remove `last` (it may only name the newest
// revision, and a chunked one has no image file), and they would find out at restore time. So an
// archive whose newest revision has an image file (a 2.0–2.1 revision, or one in layout `images`)
// goes on in layout `images` until its config says otherwise (docs/migrating-from-backy-2.md).
import { readdir } from 'node:fs/promises';
import { fromLegacyArchiveConfig, readYamlFile } from '../config.js';
import { revFileName } from '../format/archive-files.js';
import { isRevisionId } from '../ids.js';
import { readRevisions } from './facts.js';
import { layoutOf } from './layouts.js';

/** `images` when the config at `configPath` sets no `layout` and the newest revision in `dir` has an image file. */
export async function impliedImagesLayout(dir: string, configPath: string): Promise<boolean> {
  const raw = fromLegacyArchiveConfig(await readYamlFile(configPath));
  if (raw == null || typeof raw !== 'object' || 'layout' in raw) return false;
  // Most archives hold no revision with a file `<id>`: they are known without reading any `.rev`.
  const names = await readdir(dir).catch(() => [] as string[]);
  const present = new Set(names);
  if (!names.some((n) => isRevisionId(n) && present.has(revFileName(n)))) return false;
  const newest = (await readRevisions(dir)).at(-1);
  return newest != null && layoutOf(newest).imageFile;
}
