import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  debianPackages,
  missingTools,
  packageOf,
  parseTestTools,
  TOOLS_FILE,
  testTools,
  toolChecker,
} from './index.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

/** Every TypeScript file of the workspace packages and tools (tests, helpers and the code they run). */
function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) sources(path, out);
    else if (/\.(ts|mts)$/.test(name)) out.push(path);
  }
  return out;
}

/** Programs a file starts by a literal name: spawn('x'…), execFile('x'…), run('x'…), haveCommand('x'). */
function programsRun(text: string): string[] {
  const found = new Set<string>();
  const call =
    /\b(?:spawn|spawnSync|execFile|execFileSync|execFileAsync|run|haveCommand|haveTool)\(\s*['"`]([A-Za-z0-9._+-]+)['"`]/g;
  for (const m of text.matchAll(call)) found.add(m[1]!);
  // Every name in a list of tools: missingTools('a', 'b'), skipWithout('label', 'a', 'b').
  for (const m of text.matchAll(/\b(missingTools|skipWithout)\(([^)]*)\)/g)) {
    const names = [...m[2]!.matchAll(/['"`]([A-Za-z0-9._+-]+)['"`]/g)].map((n) => n[1]!);
    for (const name of m[1] === 'skipWithout' ? names.slice(1) : names) found.add(name);
  }
  const commandV = /command -v ([A-Za-z0-9._+-]+)/g;
  for (const m of text.matchAll(commandV)) found.add(m[1]!);
  return [...found];
}

describe('the test-tools list', () => {
  it('parses, names a valid Debian package for every tool, and lists no tool twice', () => {
    const tools = testTools();
    expect(tools.size).toBeGreaterThan(20);
    expect(packageOf('nbdsh')).toBe('python3-libnbd');
    expect(() => parseTestTools('nbdsh\n')).toThrow(/expected "TOOL PACKAGE/);
    expect(() => parseTestTools('a pkg\na other\n')).toThrow(/a is listed twice/);
    expect(() => parseTestTools('a Not_A_Package\n')).toThrow(/not a Debian package name/);
  });

  it('is what .ci/run installs: the same packages through tools/test-env/debian-packages', () => {
    const script = join(repo, 'tools/test-env/debian-packages');
    const r = spawnSync(script, { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(debianPackages());
    expect(debianPackages()).toContain('python3-libnbd');
    expect(readFileSync(join(repo, '.ci/run'), 'utf8')).toContain('tools/test-env/debian-packages');
  });

  it('refuses a tool that is not on the list, so a new one cannot be forgotten', () => {
    expect(() => missingTools('definitely-not-listed')).toThrow(/not in .*test-tools\.txt/);
    expect(missingTools('sh')).toBeNull();
  });

  it('names the tool and its package in a skip reason', () => {
    const list = new Map(parseTestTools('sh dash\nghost-tool-4711 ghost-package\n').map((t) => [t.tool, t]));
    const check = toolChecker(() => list);
    expect(check.haveTool('sh')).toBe(true);
    expect(check.missingTools('sh', 'ghost-tool-4711')).toBe(
      'ghost-tool-4711 is not installed (Debian package ghost-package)',
    );
    expect(() => check.missingTools('qemu-img')).toThrow(/"qemu-img", which is not in/);
  });

  it('covers every program a source file of the workspace starts by name', () => {
    expect(
      programsRun(
        `spawnSync(\n  'qemu-img', []); run('nbdsh', []); sh -c 'command -v fincore'; missingTools('a', 'b'); skipWithout('label', 'c')`,
      ),
    ).toEqual(['qemu-img', 'nbdsh', 'a', 'b', 'c', 'fincore']);
    const unlisted: string[] = [];
    const files = [...sources(join(repo, 'packages')), ...sources(join(repo, 'tools'))];
    expect(files.length).toBeGreaterThan(50);
    for (const file of files) {
      if (file.endsWith('tools.test.ts')) continue; // this file's own examples
      for (const program of programsRun(readFileSync(file, 'utf8'))) {
        if (!testTools().has(program)) unlisted.push(`${relative(repo, file)}: ${program}`);
      }
    }
    expect(unlisted, `add these to ${relative(repo, TOOLS_FILE)}`).toEqual([]);
  });
});
