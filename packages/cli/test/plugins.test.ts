/**
 * Source plugins loaded by module path, each broken in its own way: every failure is its own one-line
 * error naming the module and the cause, exit 1, and no archive is created. (Plugins by package name,
 * a missing dependency and a `type` that differs from the package name: pack.test.ts, where a packed
 * CLI has a node_modules of its own to find them in.)
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backy, oneLineError, tempDir } from './helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };

/** A Standard Schema by hand (a plugin loaded by path cannot import zod from here). */
const SCHEMA = `{
  '~standard': {
    version: 1,
    vendor: 'test',
    validate(value) {
      if (value == null || typeof value !== 'object' || Array.isArray(value)) return { issues: [{ message: 'expected an object' }] };
      for (const key of Object.keys(value))
        if (!['path', 'level', 'tags', 'nested'].includes(key)) return { issues: [{ message: 'unknown key ' + JSON.stringify(key), path: [key] }] };
      if (typeof value.path !== 'string') return { issues: [{ message: 'required', path: ['path'] }] };
      return { value };
    },
  },
}`;

const GOOD = `export default {
  type: 'by-path',
  optionsSchema: ${SCHEMA},
  create: () => ({ async backup(ctx) { await ctx.writer.resize(0); } }),
  parseInitArgument: (argument) => ({ path: argument }),
};\n`;

const modules: Record<string, string> = {
  'good.mjs': GOOD,
  'syntax.mjs': 'export default {\n  type: "x",\n  create() {\n};\n',
  'throws.mjs': "throw new Error('cannot reach the license server');\n",
  'no-default.mjs': 'export function createSource() {}\n',
  'no-create.mjs': "export default { type: 'x', optionsSchema: {} };\n",
  'zod-3-era.mjs': "export default { type: 'x', create() {}, optionsSchema: { parse() {} } };\n",
  'imports-missing.mjs': "import 'backy-test-no-such-dependency';\nexport default {};\n",
};

beforeAll(async () => {
  dir = await tempDir();
  for (const [name, text] of Object.entries(modules)) await writeFile(join(dir.path, name), text);
  await mkdir(join(dir.path, 'a-directory'));
});

afterAll(async () => {
  await dir?.cleanup();
});

function init(archive: string, ...args: string[]) {
  const result = backy(['-b', join(dir.path, archive), 'init', ...args], { cwd: dir.path });
  return { result, created: existsSync(join(dir.path, archive, 'config')) };
}

describe('source plugins by path', () => {
  it('each way a plugin fails to load is its own one-line error, and no archive is made', () => {
    const cases: [string, RegExp][] = [
      ['missing.mjs', /source module .*\/missing\.mjs: no such file$/],
      ['a-directory', /source module .*\/a-directory is a directory: name the module's entry file$/],
      ['syntax.mjs', /source module .*\/syntax\.mjs has a syntax error \(.*\/syntax\.mjs:\d+\): /],
      ['throws.mjs', /source module .*\/throws\.mjs failed while loading: cannot reach the license server$/],
      ['no-default.mjs', /does not export a source: .*\(it has no default export, only createSource\)$/],
      ['no-create.mjs', /does not export a source: .*\(its default export lacks create \(a function\)\)$/],
      ['zod-3-era.mjs', /does not export a source: .*its optionsSchema is not a Standard Schema/],
      [
        'imports-missing.mjs',
        /source module .*\/imports-missing\.mjs cannot load its dependency "backy-test-no-such-dependency" \(imported from .*imports-missing\.mjs\)/,
      ],
    ];
    for (const [file, pattern] of cases) {
      const { result, created } = init(`archive-${file}`, join(dir.path, file), '/srv/disk.img');
      expect(result.code, file).toBe(1);
      expect(oneLineError(result), file).toMatch(pattern);
      expect(created, `${file}: no archive`).toBe(false);
    }
  });

  it('a relative path in a config is refused; init writes the path absolute', async () => {
    const { result, created } = init('relative', './good.mjs', 'disk.img');
    expect(result.code, result.stderr).toBe(0);
    expect(created).toBe(true);
    const config = await readFile(join(dir.path, 'relative', 'config'), 'utf8');
    expect(config).toContain(`type: ${join(dir.path, 'good.mjs')}`);
    await writeFile(
      join(dir.path, 'relative', 'config'),
      config.replace(join(dir.path, 'good.mjs'), './good.mjs'),
    );
    const backup = backy(['-b', join(dir.path, 'relative'), 'backup', '-f', 'x'], { cwd: dir.path });
    expect(oneLineError(backup)).toMatch(/a module path in a config must be absolute/);
  });

  it('init -o sets structured options: dotted keys nest, JSON values keep their type', async () => {
    const good = join(dir.path, 'good.mjs');
    const { result } = init(
      'options',
      '-o',
      'level=3',
      '-o',
      'tags=["a","b"]',
      '-o',
      'nested.name=007',
      good,
      'disk.img',
    );
    expect(result.code, result.stderr).toBe(0);
    const config = await readFile(join(dir.path, 'options', 'config'), 'utf8');
    expect(config).toMatch(/path: disk\.img/);
    expect(config).toMatch(/level: 3\n/);
    expect(config).toMatch(/tags:\n\s+- a\n\s+- b/);
    expect(config).toMatch(/nested:\n\s+name: "007"/);
    // Without a SOURCE argument the options alone must satisfy the schema.
    const alone = init('alone', '-o', 'path=/srv/vm.img', good);
    expect(alone.result.code, alone.result.stderr).toBe(0);
    const missing = init('missing-path', '-o', 'level=1', good);
    expect(missing.result.code).toBe(2);
    expect(oneLineError(missing.result)).toMatch(/: source\.path: required$/);
    const unknown = init('unknown-key', '-o', 'colour=blue', good, 'disk.img');
    expect(oneLineError(unknown.result)).toMatch(/: source\.colour: unknown key "colour"$/);
    const bad = init('bad-pair', '-o', 'novalue', good, 'disk.img');
    expect(bad.result.code).toBe(2);
    expect(oneLineError(bad.result)).toMatch(/-o "novalue": expected KEY=VALUE/);
    // Nested options from SOURCE and -o merge key by key; names that would reach Object's prototype are refused.
    const nestedGood = GOOD.replace(
      'parseInitArgument: (argument) => ({ path: argument })',
      "parseInitArgument: (argument) => ({ path: argument, nested: { url: 'u', name: 'n' } })",
    );
    await writeFile(join(dir.path, 'nested.mjs'), nestedGood);
    const merged = init('merged', '-o', 'nested.name=m', join(dir.path, 'nested.mjs'), 'disk.img');
    expect(merged.result.code, merged.result.stderr).toBe(0);
    expect(await readFile(join(dir.path, 'merged', 'config'), 'utf8')).toMatch(
      /nested:\n\s+url: u\n\s+name: m/,
    );
    const proto = init('proto', '-o', '__proto__.path=/evil', good, 'disk.img');
    expect(oneLineError(proto.result)).toMatch(/-o __proto__\.path: not an option name$/);
    const typed = init('typed', '-o', 'type=file', good, 'disk.img');
    expect(oneLineError(typed.result)).toMatch(/the source type is the TYPE argument/);
    for (const name of ['missing-path', 'unknown-key', 'bad-pair', 'proto', 'typed'])
      expect(existsSync(join(dir.path, name, 'config')), name).toBe(false);
  });
});
