import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { folderCycles, importCycles, type ScannedFile, scanText, scanWorkspace } from './structure.js';

// The shape rules of the workspace (issue 25): no source file over 500 lines, no function over 120,
// no import cycle, no import of an undeclared package, no import from a folder above one's own. Today's
// exceptions are listed with their size: an entry may shrink or go, never grow, and an entry that is no
// longer needed fails the test until it is removed, so that the lists only get shorter.

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const workspace = scanWorkspace(repo);
const sources = workspace.files.filter((f) => f.isSource);

const MAX_FILE_LINES = 500;
const MAX_FUNCTION_LINES = 120;

/** Source files over the limit today, with their line count then. */
const LONG_FILES: Record<string, number> = {};

/** Functions over the limit today (`file:name`), with their line count then. */
const LONG_FUNCTIONS: Record<string, number> = {};

/** Import cycles today, each as its files (sorted). */
const CYCLES: string[][] = [];

/** Import cycles between folders today, each as its folders (sorted). */
const FOLDER_CYCLES: string[][] = [];

/** Imports from a folder above the file's own today (`from -> to`). */
const UPWARD_IMPORTS: string[] = [];

/** What breaks a limit beyond its allowance, and allowances that are no longer used. */
function overLimit(found: Map<string, number>, allowed: Record<string, number>, limit: number) {
  const over = [...found].filter(([key, n]) => n > (allowed[key] ?? limit)).map(([k, n]) => `${k}: ${n}`);
  const stale = Object.keys(allowed).filter((key) => (found.get(key) ?? 0) <= limit);
  return { over, stale };
}

/** What was found is what is listed: nothing beyond it, and nothing listed that is gone. */
function expectOnlyListed(found: string[], listed: string[], what: string, list: string) {
  expect(
    found.filter((c) => !listed.includes(c)),
    what,
  ).toEqual([]);
  expect(
    listed.filter((c) => !found.includes(c)),
    `gone or changed: update ${list}`,
  ).toEqual([]);
}

const joined = (cycles: string[][]) => cycles.map((c) => c.join(' '));

describe('the structure of the workspace', () => {
  it('reads the workspace: packages, their sources and their imports', () => {
    expect(workspace.packages.map((p) => p.name)).toContain('@backy/core');
    expect(sources.length).toBeGreaterThan(100);
    const main = sources.find((f) => f.path === 'packages/cli/src/main.ts');
    expect(main?.imports.some((i) => i.file === 'packages/cli/src/args.ts')).toBe(true);
  });

  it(`has no source file over ${MAX_FILE_LINES} lines (beyond the listed ones, which only shrink)`, () => {
    const { over, stale } = overLimit(
      new Map(sources.map((f) => [f.path, f.lines])),
      LONG_FILES,
      MAX_FILE_LINES,
    );
    expect(over, 'files over the limit').toEqual([]);
    expect(stale, 'now within the limit: remove from LONG_FILES').toEqual([]);
  });

  it(`has no function over ${MAX_FUNCTION_LINES} lines in source files (beyond the listed ones)`, () => {
    const found = new Map<string, number>();
    for (const f of sources) {
      for (const fn of f.functions) {
        const key = `${f.path}:${fn.name}`;
        found.set(key, Math.max(found.get(key) ?? 0, fn.lines));
      }
    }
    const { over, stale } = overLimit(found, LONG_FUNCTIONS, MAX_FUNCTION_LINES);
    expect(over, 'functions over the limit').toEqual([]);
    expect(stale, 'now within the limit: remove from LONG_FUNCTIONS').toEqual([]);
  });

  it('has no import cycle among source files, type-only imports included (beyond the listed ones)', () => {
    expectOnlyListed(joined(importCycles(sources)), joined(CYCLES), 'import cycles', 'CYCLES');
  });

  it('has no import cycle between the folders of a package (beyond the listed ones)', () => {
    expectOnlyListed(joined(folderCycles(sources)), joined(FOLDER_CYCLES), 'folder cycles', 'FOLDER_CYCLES');
  });

  it('imports only packages its package.json declares (published code: not devDependencies)', () => {
    const undeclared: string[] = [];
    for (const f of workspace.files) {
      const pkg = workspace.packages.find((p) => p.dir === f.packageDir)!;
      // Tests, and private packages that are never installed elsewhere, run inside the workspace.
      const inWorkspace = !f.isSource || pkg.private;
      for (const i of f.imports) {
        const name = i.packageName;
        if (name == null || pkg.dependencies.has(name)) continue;
        if (inWorkspace && (pkg.devDependencies.has(name) || workspace.rootDevDependencies.has(name)))
          continue;
        undeclared.push(`${f.path}: ${i.specifier} (not in ${pkg.dir}/package.json)`);
      }
    }
    expect(undeclared).toEqual([]);
  });

  it("imports no file from a folder above its own, but the package's src/ root (beyond the listed ones)", () => {
    const upward: string[] = [];
    const outside: string[] = [];
    for (const f of sources) {
      const own = dirname(f.path);
      for (const i of f.imports) {
        if (i.file == null) continue;
        if (!i.file.startsWith(`${f.packageDir}/`)) outside.push(`${f.path} -> ${i.file}`);
        const target = dirname(i.file);
        if (target !== own && target !== `${f.packageDir}/src` && own.startsWith(`${target}/`))
          upward.push(`${f.path} -> ${i.file}`);
      }
    }
    const found = [...new Set(upward)];
    expect(outside, "another package's files by path: import it by its name").toEqual([]);
    expectOnlyListed(found, UPWARD_IMPORTS, 'imports from a folder above', 'UPWARD_IMPORTS');
  });
});

describe('the structure scanner', () => {
  it('tells erased imports from loaded ones, and finds re-exports and dynamic imports', () => {
    const { imports } = scanText(
      '/x/src/a.ts',
      [
        "import type { A } from 'pino';",
        "import { type B, type C } from 'zod';",
        "import { type D, e } from 'yaml';",
        "export { f } from '@scope/pkg/sub';",
        "const g = await import('node:fs');",
        "type H = import('cli-table3').T;",
      ].join('\n'),
    );
    expect(imports.map((i) => [i.packageName, i.typeOnly])).toEqual([
      ['pino', true],
      ['zod', true],
      ['yaml', false],
      ['@scope/pkg', false],
      [null, false],
      ['cli-table3', true],
    ]);
  });

  it('measures functions, methods and arrow functions by their lines', () => {
    const { functions, lines } = scanText(
      '/x/src/a.ts',
      'export function one() {\n  return 1;\n}\nclass K {\n  m() {\n    const f = () => {\n      return 2;\n    };\n  }\n}\n',
    );
    expect(lines).toBe(10);
    expect(functions.map((f) => [f.name, f.lines])).toEqual([
      ['one', 3],
      ['m', 5],
      ['f', 3],
    ]);
  });

  it('finds every cycle once, type-only imports included', () => {
    const file = (path: string, ...to: string[]): ScannedFile => ({
      path,
      packageDir: 'p',
      isSource: true,
      lines: 1,
      functions: [],
      imports: to.map((t) => ({ specifier: t, typeOnly: true, file: t, packageName: null })),
    });
    const cycles = importCycles([
      file('c', 'a'),
      file('a', 'b'),
      file('b', 'c'),
      file('d', 'a'),
      file('e', 'e'),
    ]);
    expect(cycles).toEqual([['a', 'b', 'c'], ['e']]);
  });
});
