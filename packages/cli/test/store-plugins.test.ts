/**
 * Store drivers loaded by module path, as sources are (plugins.test.ts): a working one carries an archive
 * through init, backup, restore, verify and purge; each broken one is its own one-line error naming the
 * module and the cause, exit 1, and no archive is created.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backy, oneLineError, tempDir } from './helpers.js';

/** The built `@backy/core/store`, which a module outside the workspace reaches only by URL. */
const CORE_STORE = new URL('../../core/dist/store/index.js', import.meta.url).href;

/** A Standard Schema by hand: `path` is required (the directory store's is optional). */
const SCHEMA = `{
  '~standard': {
    version: 1,
    vendor: 'test',
    validate(value) {
      for (const key of Object.keys(value ?? {}))
        if (key !== 'path') return { issues: [{ message: 'unknown key ' + JSON.stringify(key), path: [key] }] };
      if (typeof value?.path !== 'string') return { issues: [{ message: 'required', path: ['path'] }] };
      return { value };
    },
  },
}`;

/** A third-party driver in a few lines: the directory store under a type of its own, which logs each open. */
const GOOD = `import { appendFileSync } from 'node:fs';
import { defineStoreDriver, directoryStoreDriver } from ${JSON.stringify(CORE_STORE)};
export default defineStoreDriver({
  type: 'counting',
  optionsSchema: ${SCHEMA},
  open(options, context) {
    appendFileSync(options.path + '.opened', context.codec + '\\n');
    return directoryStoreDriver.open({ path: options.path }, context);
  },
});\n`;

const modules: Record<string, string> = {
  'counting.mjs': GOOD,
  'syntax.mjs': 'export default {\n  type: "x",\n  open() {\n};\n',
  'throws.mjs': "throw new Error('cannot reach the license server');\n",
  'no-default.mjs': 'export function openStore() {}\n',
  'no-open.mjs': `export default { type: 'x', optionsSchema: ${SCHEMA}, create() {} };\n`,
  'imports-missing.mjs': "import 'backy-test-no-such-dependency';\nexport default {};\n",
};

let dir: { path: string; cleanup: () => Promise<void> };
let image: string;

beforeAll(async () => {
  dir = await tempDir();
  for (const [name, text] of Object.entries(modules)) await writeFile(join(dir.path, name), text);
  await mkdir(join(dir.path, 'a-directory'));
  image = join(dir.path, 'disk.img');
  await writeFile(image, randomBytes(9 * MiB + 123));
});

afterAll(async () => {
  await dir?.cleanup();
});

function init(archive: string, ...store: string[]) {
  const args = store.flatMap((option) => ['--store', option]);
  const result = backy(['-b', join(dir.path, archive), 'init', ...args, 'file', image], { cwd: dir.path });
  return { result, created: existsSync(join(dir.path, archive, 'config')) };
}

/** The chunk files under a directory store's root. */
async function chunkFiles(root: string): Promise<string[]> {
  const dirs = (await readdir(root)).filter((name) => /^[0-9a-f]{2}$/.test(name));
  const files = await Promise.all(
    dirs.map(async (d) => (await readdir(join(root, d))).map((f) => join(d, f))),
  );
  return files.flat().filter((name) => /\/[0-9a-f]{64}$/.test(name));
}

describe('store drivers by path', () => {
  it('a driver by module path carries an archive through init, backup, restore, verify and purge', async () => {
    const store = join(dir.path, 'counting-store');
    const { result, created } = init('good', 'type=./counting.mjs', `path=${store}`);
    expect(result.code, result.stderr).toBe(0);
    expect(created).toBe(true);
    const archive = join(dir.path, 'good');
    // init writes the module's path absolute, as for a source.
    expect(await readFile(join(archive, 'config'), 'utf8')).toContain(
      `type: ${join(dir.path, 'counting.mjs')}`,
    );
    const b = (...args: string[]) => backy(['-b', archive, ...args], { cwd: dir.path });

    const first = b('backup', '-f', 'daily');
    expect(first.code, first.stderr).toBe(0);
    const stored = await chunkFiles(store);
    expect(stored.length, 'the chunks are in the driver’s store').toBeGreaterThan(0);
    expect(existsSync(join(archive, 'chunks')), 'and not in the archive’s own chunks/').toBe(false);

    const out = join(dir.path, 'restored.img');
    const restore = b('restore', '-r', 'last', out);
    expect(restore.code, restore.stderr).toBe(0);
    expect((await readFile(out)).equals(await readFile(image))).toBe(true);

    const verify = b('verify');
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/: verified/);

    // A second revision of other data, the first forgotten: purge removes the chunks only it used.
    await writeFile(image, randomBytes(9 * MiB + 123));
    expect(b('backup', '-f', 'daily').code).toBe(0);
    expect(b('forget', '-r', '1').code).toBe(0);
    const purge = b('purge');
    expect(purge.code, purge.stderr).toBe(0);
    expect(purge.stdout).toMatch(/purged [1-9]\d* chunks/);
    const left = await chunkFiles(store);
    expect(left.filter((name) => stored.includes(name))).toEqual([]);
    const again = b('restore', '-r', 'last', '--force', out);
    expect(again.code, again.stderr).toBe(0);
    expect((await readFile(out)).equals(await readFile(image))).toBe(true);
    // Every command went through the driver.
    const opened = (await readFile(`${store}.opened`, 'utf8')).trim().split('\n');
    expect(opened.length).toBeGreaterThanOrEqual(7);
  });

  it('each way a driver fails to load is its own one-line error, and no archive is made', () => {
    const cases: [string, RegExp][] = [
      ['missing.mjs', /store module .*\/missing\.mjs: no such file$/],
      ['a-directory', /store module .*\/a-directory is a directory: name the module's entry file$/],
      ['syntax.mjs', /store module .*\/syntax\.mjs has a syntax error \(.*\/syntax\.mjs:\d+\): /],
      ['throws.mjs', /store module .*\/throws\.mjs failed while loading: cannot reach the license server$/],
      [
        'no-default.mjs',
        /store module .*\/no-default\.mjs does not export a store driver: its default export must be made with defineStoreDriver\({ type, optionsSchema, open }\) from @backy\/core\/store \(it has no default export, only openStore\)$/,
      ],
      ['no-open.mjs', /does not export a store driver: .*\(its default export lacks open \(a function\)\)$/],
      [
        'imports-missing.mjs',
        /store module .*\/imports-missing\.mjs cannot load its dependency "backy-test-no-such-dependency" \(imported from .*imports-missing\.mjs\)/,
      ],
    ];
    for (const [file, pattern] of cases) {
      const { result, created } = init(`archive-${file}`, `type=${join(dir.path, file)}`, 'path=/nowhere');
      expect(result.code, file).toBe(1);
      expect(oneLineError(result), file).toMatch(pattern);
      expect(created, `${file}: no archive`).toBe(false);
    }
  });

  it('a package name that is not installed beside backy is an unknown store type', () => {
    const { result, created } = init('by-package', 'type=backy-store-counting', 'path=/nowhere');
    expect(result.code).toBe(1);
    expect(oneLineError(result)).toMatch(
      /^backy: error: unknown store type "backy-store-counting": not built in \(directory, s3\) and no package of that name is installed beside backy \(\/.*\); install it there \(npm install -g for a global backy\) or name the module by its absolute path$/,
    );
    expect(created).toBe(false);
  });

  it('a relative module path in a config is refused', async () => {
    const { result } = init(
      'relative',
      `type=${join(dir.path, 'counting.mjs')}`,
      `path=${join(dir.path, 'rel')}`,
    );
    expect(result.code, result.stderr).toBe(0);
    const config = join(dir.path, 'relative', 'config');
    await writeFile(
      config,
      (await readFile(config, 'utf8')).replace(join(dir.path, 'counting.mjs'), './counting.mjs'),
    );
    const status = backy(['-b', join(dir.path, 'relative'), 'status'], { cwd: dir.path });
    expect(status.code).toBe(1);
    expect(oneLineError(status)).toMatch(
      /store type "\.\/counting\.mjs": a module path in a config must be absolute/,
    );
  });
});

describe('what a store author imports', () => {
  /** Runs `script` (an ES module) with a resolve hook that finds no vitest, as where it is not installed. */
  function withoutVitest(script: string) {
    const hook = `export async function resolve(specifier, context, next) {
      if (specifier === 'vitest' || specifier.startsWith('vitest/')) {
        const error = new Error("Cannot find package 'vitest' imported from " + context.parentURL);
        error.code = 'ERR_MODULE_NOT_FOUND';
        throw error;
      }
      return next(specifier, context);
    }`;
    const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        `data:text/javascript,${encodeURIComponent(register)}`,
        '--input-type=module',
        '-e',
        script,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('@backy/core/testing loads without vitest: its helpers work, a suite says what to install', () => {
    const testing = new URL('../../core/dist/testing/index.js', import.meta.url).href;
    const r = withoutVitest(`
      const testing = await import(${JSON.stringify(testing)});
      const dir = await testing.tempDir();
      await dir.cleanup();
      console.log('vmLikeData', testing.vmLikeData(4096).length);
      try {
        testing.testChunkStore({ name: 'x', skip: 'no backend', makeStore: async () => ({}) });
      } catch (error) {
        console.log(error.message);
      }
    `);
    expect(r.stderr).not.toMatch(
      /ERR_MODULE_NOT_FOUND|Cannot find package 'vitest' imported from .*\n\s+at /,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^vmLikeData 4096$/m);
    expect(r.stdout).toMatch(
      /^@backy\/core\/testing: describe\.skip needs vitest >= 3\.2 \(an optional peer dependency of @backy\/core\), which cannot be loaded: Cannot find package 'vitest'/m,
    );
  });

  it('@backy/core/store has what a driver is built from', async () => {
    const store = await import(CORE_STORE);
    expect(typeof store.defineStoreDriver).toBe('function');
    expect(typeof store.DirectoryChunkStore).toBe('function');
    expect(store.isStoreDriver(store.directoryStoreDriver)).toBe(true);
    expect(store.directoryStoreDriver.type).toBe('directory');
  });
});
