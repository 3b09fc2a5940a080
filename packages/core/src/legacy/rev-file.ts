// Changes of trust and tags in a backy 2.x `.rev`, written so that backy 2.x still reads the file: until
// `backy upgrade`, an operator may go back to 2.x (docs/migrating-from-backy-2.md). backy 2.x loads a
// `.rev` with PyYAML (YAML 1.1) and needs `uuid`, a time-zone-aware `timestamp`, `parent`, and takes
// `stats`, `tags`, `trust` (`trusted`, `distrusted`, `verified`; 2.0–2.1 ignore it) and `backend_type`.
// PyYAML's `safe_dump` wrote it in block style with sorted top-level keys. Only the `trust` and `tags`
// entries are replaced (or inserted in key order); every other byte stays, so no field and no digit of
// the timestamp's microseconds is lost.
import { readFile } from 'node:fs/promises';
import { isDeepStrictEqual } from 'node:util';
import { parse, stringify } from 'yaml';
import { BackyError, ioError } from '../errors.js';
import type { RevisionData } from '../revision.js';

/** The fields backy changes in a 2.x revision short of `upgrade`; anything else needs `upgrade`. */
const CHANGEABLE = ['trust', 'tags'] as const;

/**
 * The new text of the backy 2.x `.rev` at `path` with `next`'s trust and tags (`current` is what
 * `readRevisionFile` made of the file). Throws when `next` changes another field, or when the file is
 * not in a shape this can edit without rewriting other entries: nothing is written then.
 */
export async function legacyRevisionText(
  path: string,
  current: RevisionData,
  next: RevisionData,
): Promise<string> {
  // When verify last re-read it (`verified_at`) has no place in 2.x's schema: it is not kept in a 2.x
  // file, so the scheduler's verify jobs count a 2.x revision as never verified until `backy upgrade`.
  const { trust: _t, tags: _g, verified_at: _v, ...restNext } = next;
  const { trust: _t2, tags: _g2, verified_at: _v2, ...restCurrent } = current;
  if (!isDeepStrictEqual(restNext, restCurrent)) {
    throw new BackyError(
      'REVISION_INVALID',
      `${path}: a backy 2.x revision keeps only trust and tags changes in 2.x's format; run \`backy upgrade\` first`,
    );
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw ioError(error, `reading revision ${path}`);
  }
  const before = parse(text) as Record<string, unknown>;
  const entries = topLevelEntries(text);
  const wanted: Record<(typeof CHANGEABLE)[number], string | null> = {
    trust: next.trust === current.trust ? null : `trust: ${next.trust}\n`,
    tags: isDeepStrictEqual(next.tags, current.tags) ? null : tagsEntry(next.tags),
  };
  for (const key of CHANGEABLE) {
    const entry = wanted[key];
    if (entry == null) continue;
    const at = entries.findIndex((e) => e.key === key);
    if (at >= 0) entries[at]!.text = entry;
    else {
      // PyYAML sorts the keys: the new entry goes where 2.x itself would have written it.
      const after = entries.findIndex((e) => e.key != null && e.key > key);
      entries.splice(after < 0 ? entries.length : after, 0, { key, text: entry });
    }
  }
  const out = entries.map((e) => e.text).join('');
  // The edit is proven, not assumed: every other field reads as before, trust and tags as wanted.
  const after = (() => {
    try {
      return parse(out) as Record<string, unknown>;
    } catch {
      return null;
    }
  })();
  const expected = {
    ...before,
    ...(wanted.trust == null ? {} : { trust: next.trust }),
    ...(wanted.tags == null ? {} : { tags: next.tags }),
  };
  if (after == null || !isDeepStrictEqual(after, expected)) {
    throw new BackyError(
      'REVISION_INVALID',
      `${path}: this backy 2.x revision file is not in the block style backy 2.x writes, so its trust and tags cannot be changed in place; run \`backy upgrade\` first`,
    );
  }
  return out;
}

function tagsEntry(tags: readonly string[]): string {
  if (tags.length === 0) return 'tags: []\n';
  // YAML 1.1 quoting, as PyYAML reads it: a tag `yes` or `1` stays a string for 2.x.
  return `tags:\n${tags.map((t) => `- ${stringify(t, { version: '1.1' }).trimEnd()}\n`).join('')}`;
}

/**
 * The file cut into its top-level entries: each starts with an unindented `key:` line and runs to the
 * next one (its indented lines and PyYAML's indentless `- item` lines). Text before the first key (a
 * comment, `---`) is kept as an entry without a key.
 */
function topLevelEntries(text: string): { key: string | null; text: string }[] {
  const lines = text.split(/(?<=\n)/);
  if (lines.length > 0 && !lines.at(-1)!.endsWith('\n')) lines[lines.length - 1] += '\n';
  const entries: { key: string | null; text: string }[] = [];
  for (const line of lines) {
    const key = /^([A-Za-z_][\w-]*):(?:\s|$)/.exec(line)?.[1] ?? null;
    if (key != null || entries.length === 0) entries.push({ key, text: line });
    else entries.at(-1)!.text += line;
  }
  return entries;
}
