import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  exportedNames,
  publishedEntryPoints,
  reachableDeclarations,
  withoutComments,
  zodMentions,
} from './published-api.js';

// The published API of every package (issue 25), read from the built declarations (`pnpm test` builds
// first): no entry's types name zod, so that a zod major is not a backy major, and each entry exports
// what the README's package table says, so that the API grows only on purpose.

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const entries = publishedEntryPoints(repo);

/**
 * Entries whose declarations may name zod, with the reason. Only this one: a zod schema to extend,
 * for @backy/source-flyingcircus (its README says so); the package's main entry does not name zod.
 */
const ZOD_ENTRIES: Record<string, string> = {
  '@backy/source-ceph-rbd/options': 'rbdSourceOptions, the zod schema source-flyingcircus extends',
};

/** `| \`@backy/core/source\` | … | 42 |` rows of the README's package table: entry → exports. */
function readmeCounts(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of readFileSync(`${repo}README.md`, 'utf8').split('\n')) {
    const row = /^\| `(@backy\/[^`]+)` \|.*\| (\d+) \|$/.exec(line);
    if (row != null) counts.set(row[1]!, Number(row[2]));
  }
  return counts;
}

describe('the published declarations', () => {
  it('are built for every entry point of every published package', () => {
    expect(entries.map((e) => e.specifier)).toContain('@backy/core/source');
    const missing = entries.filter((e) => !existsSync(e.types)).map((e) => e.types);
    expect(missing, 'not built: run pnpm build').toEqual([]);
  });

  it('name zod nowhere (types, imports) but in the listed entries', () => {
    const found: string[] = [];
    for (const entry of entries) {
      if (Object.hasOwn(ZOD_ENTRIES, entry.specifier)) continue;
      for (const file of reachableDeclarations(entry.types)) {
        const mentions = zodMentions(readFileSync(file, 'utf8'));
        if (mentions.length > 0)
          found.push(`${entry.specifier}: ${file.slice(repo.length)}: ${mentions.length} (${mentions[0]})`);
      }
    }
    expect(found).toEqual([]);
    for (const specifier of Object.keys(ZOD_ENTRIES))
      expect(
        entries.map((e) => e.specifier),
        'gone: remove from ZOD_ENTRIES',
      ).toContain(specifier);
  });

  it("export as many names per entry point as the README's package table says", () => {
    const readme = readmeCounts();
    const actual = new Map(
      entries.map((e) => [e.specifier, exportedNames(readFileSync(e.types, 'utf8')).length]),
    );
    expect(
      Object.fromEntries(readme),
      'update the exports column of the README: an entry point grows only on purpose',
    ).toEqual(Object.fromEntries(actual));
  });
});

describe('the declaration readers', () => {
  it('count exports of every form and find zod in code but not in comments', () => {
    const text = [
      "import { z } from 'zod';",
      '/** zod 4, or any Standard Schema */',
      'declare const a: z.ZodObject<{}>;',
      'export declare function f(): void;',
      'export interface I {}',
      "export { a as b, type T, c } from './x.js';",
      'export { f as default };',
      '// ZodType in a comment',
    ].join('\n');
    expect(zodMentions(text)).toEqual(['zod', 'ZodObject']);
    expect(withoutComments(text)).not.toContain('Standard Schema');
    expect(exportedNames(text)).toEqual(['I', 'T', 'b', 'c', 'default', 'f']);
    expect(() => exportedNames("export * from './y.js';")).toThrow(/cannot be counted/);
  });
});
