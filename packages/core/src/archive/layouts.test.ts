import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { archiveConfigSchema } from '../config.js';
import { isBackyError } from '../errors.js';
import { revisionSchema } from '../revision.js';
import { isConfigLayoutName, layoutFor, layoutNamed, layoutOf } from './layouts.js';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));

/** The non-test TypeScript sources of every package, as [path from the repository, text]. */
function sources(): [string, string][] {
  const out: [string, string][] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts'))
        out.push([relative(repo, path), readFileSync(path, 'utf8')]);
    }
  };
  for (const pkg of readdirSync(join(repo, 'packages'))) {
    const src = join(repo, 'packages', pkg, 'src');
    if (readdirSync(join(repo, 'packages', pkg)).includes('src')) walk(src);
  }
  return out;
}

/** `file:line` of each line in `sources` that matches `pattern`. */
function linesMatching(pattern: RegExp): string[] {
  return sources().flatMap(([path, text]) =>
    text.split('\n').flatMap((line, i) => (pattern.test(line) ? [`${path}:${i + 1}`] : [])),
  );
}

describe('the layout registry', () => {
  it("has a layout for every backend_type a .rev may name, and the config's layouts write", () => {
    const names = revisionSchema.shape.backend_type.unwrap().options;
    expect(names.map((name) => layoutOf({ backend_type: name }).name)).toEqual(names);
    const configNames = archiveConfigSchema.shape.layout.unwrap().options;
    for (const name of configNames) {
      expect(isConfigLayoutName(name)).toBe(true);
      expect(layoutFor(name).name).toBe(name);
      expect(typeof layoutFor(name).openWriter).toBe('function');
    }
    expect(names.filter(isConfigLayoutName)).toEqual(configNames);
  });

  it('says per layout what the archive, purge, verify and upgrade ask', () => {
    const facts = (name: string) => {
      const l = layoutNamed(name)!;
      return [l.legacy, l.imageFile, l.chunkStore, l.mapFile, l.verifyKey('R', 'h')];
    };
    expect(facts('chunked')).toEqual([false, false, true, true, 'h']);
    expect(facts('images')).toEqual([false, true, false, true, 'R/h']);
    expect(facts('cowfile')).toEqual([true, true, false, false, 'h']);
    expect(facts('legacy-chunked')).toEqual([true, false, false, false, 'h']);
    expect(layoutNamed('legacy-chunked')!.legacyChunks).toBeTypeOf('function');
    expect(layoutNamed('cowfile')!.title).toBe('backy 2.0-2.1 image');
  });

  it('refuses names it does not know, with an error naming them', () => {
    expect(layoutNamed('toString')).toBeNull();
    expect(layoutNamed('lvm')).toBeNull();
    expect(isConfigLayoutName('cowfile')).toBe(false);
    let error: unknown;
    try {
      layoutOf({ backend_type: 'lvm' as never });
    } catch (e) {
      error = e;
    }
    expect(isBackyError(error, 'REVISION_INVALID') && (error as Error).message).toBe(
      'unknown backend_type "lvm"',
    );
  });
});

describe('one owner of the layouts and the maps', () => {
  it('compares layout names nowhere but in the registry', () => {
    const names = "'(?:chunked|images|cowfile|legacy-chunked)'";
    const compared = linesMatching(new RegExp(`(?:===|!==)\\s*${names}|${names}\\s*(?:===|!==)`));
    // Reading a backy 2.x `.rev`: 2.x's own `backend_type: chunked` is our `legacy-chunked`.
    expect(compared.map((at) => at.replace(/:\d+$/, ''))).toEqual(['packages/core/src/revision.ts']);
  });

  it('writes map files in archive/maps.ts only', () => {
    const writes = linesMatching(/\bmap\.save\(|writeFileAtomic\([^)]*map/i);
    expect(writes.map((at) => at.replace(/:\d+$/, ''))).toEqual([
      'packages/core/src/archive/maps.ts',
      'packages/core/src/archive/maps.ts',
    ]);
  });
});
