/**
 * As a plugin author and an operator outside this repository would: the packages are packed
 * (`pnpm pack`, which turns `workspace:` and `catalog:` into versions), the example source of
 * docs/writing-a-source.md is type-checked against the packed @backy/core and runs the conformance
 * suite under the newest vitest this Node runs, and the packed CLI backs it up by package name and by path.
 *
 * npm fetches the third-party dependencies (zod, pino, vitest, …) from its registry or its cache, with
 * `--ignore-scripts` for the CLI: nothing backy needs may depend on an install script (a compiler, a
 * download from outside the registry), and a binary that is missing all the same is one line of error.
 */
import { spawnSync } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PUBLISHED = [
  'core',
  'source-file',
  'source-ceph-rbd',
  'consul',
  'source-flyingcircus',
  'nbd-protocol',
  'source-nbd',
  'source-qemu',
  'notify',
  'scheduler',
  'http-api',
  'telnet-shell',
  'nbd-server',
  'store-s3',
  'fleet',
  'cli',
];
/** The newest vitest the conformance suite's peer range admits that runs on this Node (5 needs 22.12). */
const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
const NEWEST_VITEST = major > 22 || (major === 22 && minor >= 12) ? '^5.0.0' : '^4.0.0';

/**
 * The environment of a user outside the workspace: without NODE_PATH, which pnpm's bin shims (vitest's
 * included) point at the workspace's hoisted packages, so that a package missing from the install would
 * still be found there.
 */
const { NODE_PATH: _workspaceModules, ...userEnv } = process.env;

function run(command: string, args: string[], cwd: string, timeout = 300_000) {
  const r = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    timeout,
    env: {
      ...userEnv,
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    },
  });
  return { code: r.status, out: `${r.stdout}${r.stderr}`, stdout: r.stdout, stderr: r.stderr };
}

function ok(result: ReturnType<typeof run>, what: string) {
  expect(result.code, `${what} failed:\n${result.out.slice(-4000)}`).toBe(0);
  return result;
}

describe('packed packages outside the workspace', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  const tarball: Record<string, string> = {};
  let plugin: string;
  let store: string;
  let app: string;

  beforeAll(async () => {
    dir = await tempDir('backy-pack-');
    const tarballs = join(dir.path, 'tarballs');
    await mkdir(tarballs);
    for (const name of PUBLISHED) {
      const before = new Set(await readdir(tarballs));
      ok(
        run(
          'npx',
          ['-y', 'pnpm@9.15.9', 'pack', '--pack-destination', tarballs],
          join(ROOT, 'packages', name),
        ),
        `pnpm pack of ${name}`,
      );
      const made = (await readdir(tarballs)).find((f) => !before.has(f));
      tarball[`@backy/${name}`] = join(tarballs, made!);
    }
    plugin = join(dir.path, 'backy-source-example');
    await cp(join(ROOT, 'examples/backy-source-example'), plugin, {
      recursive: true,
      filter: (src) => !/node_modules|dist/.test(src),
    });
    store = join(dir.path, 'backy-store-example');
    await cp(join(ROOT, 'examples/backy-store-example'), store, {
      recursive: true,
      filter: (src) => !/node_modules|dist/.test(src),
    });
    app = join(dir.path, 'app');
    await mkdir(app);
  }, 600_000);

  afterAll(async () => {
    await dir?.cleanup();
  });

  it('pack every package the workspace publishes', async () => {
    const published: string[] = [];
    for (const name of await readdir(join(ROOT, 'packages'))) {
      const manifest = JSON.parse(await readFile(join(ROOT, 'packages', name, 'package.json'), 'utf8'));
      if (manifest.private !== true) published.push(name);
    }
    expect([...PUBLISHED].sort()).toEqual(published.sort());
  });

  it('publish no workspace: or catalog: ranges, and each a LICENSE and a README', async () => {
    for (const name of PUBLISHED) {
      const listing = run('tar', ['-xOzf', tarball[`@backy/${name}`]!, 'package/package.json'], dir.path);
      const manifest = ok(listing, `reading ${name}'s packed package.json`).stdout;
      expect(manifest, name).not.toMatch(/"(workspace|catalog):/);
      const parsed = JSON.parse(manifest);
      expect(parsed.os, name).toEqual(['linux']);
      expect(parsed.type, `${name} is ESM only`).toBe('module');
      // src/ is not shipped: no export may point there.
      expect(JSON.stringify(parsed.exports), name).not.toMatch(/"source"|\/src\//);
      expect(parsed.publishConfig?.exports, name).toBeUndefined();
      // Every entry the workspace has is published (an entry only in the workspace's exports would be a
      // package that works here and breaks once installed).
      const workspace = JSON.parse(await readFile(join(ROOT, 'packages', name, 'package.json'), 'utf8'));
      expect(Object.keys(parsed.exports), `${name}: published entries`).toEqual(
        Object.keys(workspace.exports),
      );
      expect(parsed.repository, name).toEqual({
        type: 'git',
        url: 'git+https://github.com/backy-ts/backy.git',
        directory: `packages/${name}`,
      });
      expect(parsed.homepage, name).toMatch(/^https:\/\/github\.com\/backy-ts\/backy\//);
      expect(parsed.bugs?.url, name).toBe('https://github.com/backy-ts/backy/issues');
      expect(parsed.keywords?.length, name).toBeGreaterThan(0);
      // No scripts at all: no install hook (an install with --ignore-scripts, or pnpm 10's default,
      // loses nothing) and no build or typecheck of the workspace's, which mean nothing to a user.
      expect(parsed.scripts, `${name}: scripts`).toBeUndefined();
      const files = ok(run('tar', ['-tzf', tarball[`@backy/${name}`]!], dir.path), `listing ${name}`).stdout;
      expect(files, `${name} ships its LICENSE`).toMatch(/^package\/LICENSE$/m);
      expect(files, `${name} ships a README`).toMatch(/^package\/README\.md$/m);
      if (name === 'http-api')
        for (const file of ['index.html', 'app.js', 'style.css'])
          expect(files, `http-api ships its web page's ${file}`).toMatch(
            new RegExp(`^package/ui/${file}$`, 'm'),
          );
    }
  });

  /**
   * Builds an example plugin (docs/writing-a-source.md, docs/writing-a-backend.md) against the packed
   * @backy/core, type-checks its tests and runs its conformance suites; returns vitest's output.
   */
  async function buildAndConform(pkg: string): Promise<string> {
    const manifest = JSON.parse(await readFile(join(pkg, 'package.json'), 'utf8'));
    manifest.devDependencies = {
      '@backy/core': `file:${tarball['@backy/core']}`,
      '@types/node': NEWEST_VITEST === '^5.0.0' ? '^22.0.0' : '^20.19.0',
      typescript: '~5.9.0',
      vitest: NEWEST_VITEST,
    };
    await writeFile(join(pkg, 'package.json'), JSON.stringify(manifest, null, 2));
    ok(
      run('npm', ['install', '--prefer-offline', '--no-package-lock'], pkg, 600_000),
      `npm install (${pkg})`,
    );
    // tsc with skipLibCheck off: the packed declarations must hold up, not only the plugin's code.
    ok(run('npx', ['tsc', '-p', '.'], pkg), 'tsc (build)');
    ok(run('npx', ['tsc', '-p', 'tsconfig.check.json'], pkg), 'tsc (with the tests)');
    const test = ok(
      run('npx', ['vitest', 'run', '--reporter=verbose', 'src/conformance.test.ts'], pkg, 600_000),
      'vitest',
    );
    expect(test.out).toMatch(/\d+ passed/);
    expect(test.out).not.toMatch(/failed|skipped/);
    return test.out;
  }

  it('type-check a source package against the packed @backy/core and pass the conformance suite', async () => {
    await buildAndConform(plugin);
  }, 900_000);

  it('type-check a third-party backend against the packed @backy/core and pass both store suites', async () => {
    const out = await buildAndConform(store);
    expect(out).toContain('backend conformance: flat directory');
    expect(out).toContain('store conformance: flat directory, encrypted');
  }, 900_000);

  it('back the source up with the packed CLI, by package name and by path', async () => {
    const packed = ok(run('npm', ['pack', '--pack-destination', dir.path], plugin), 'npm pack (plugin)');
    const pluginTarball = join(dir.path, packed.stdout.trim().split('\n').at(-1)!);
    const packedStore = ok(run('npm', ['pack', '--pack-destination', dir.path], store), 'npm pack (store)');
    const storeTarball = join(dir.path, packedStore.stdout.trim().split('\n').at(-1)!);
    await writeFile(
      join(app, 'package.json'),
      JSON.stringify({
        name: 'backup-server',
        private: true,
        dependencies: {
          ...Object.fromEntries(Object.entries(tarball).map(([name, path]) => [name, `file:${path}`])),
          'backy-source-example': `file:${pluginTarball}`,
          'backy-store-example': `file:${storeTarball}`,
        },
      }),
    );
    ok(
      run('npm', ['install', '--prefer-offline', '--no-package-lock', '--ignore-scripts'], app, 600_000),
      'npm install --ignore-scripts (app)',
    );
    const image = join(app, 'disk.img');
    const data = Buffer.alloc(9 * MiB + 12345);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE((i * 2654435761) >>> 0, i);
    await writeFile(image, data);
    const backy = (...args: string[]) => run(join(app, 'node_modules/.bin/backy'), args, app);
    expect(ok(backy('--version'), 'backy --version').stdout).toMatch(/^backy \d+\.\d+\.\d+/);
    // The sources the CLI loads only when a config names them load from the install too.
    const entries = [
      '@backy/source-ceph-rbd',
      '@backy/source-flyingcircus',
      '@backy/source-nbd',
      '@backy/source-nbd/qcow2',
      '@backy/source-qemu',
    ];
    ok(
      run(
        process.execPath,
        ['--input-type=module', '-e', entries.map((e) => `await import('${e}');`).join(' ')],
        app,
      ),
      'importing the lazily loaded sources',
    );

    // The daemon's web page, from the installed @backy/http-api's own ui/ (not the workspace's).
    const page = ok(
      run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { ApiServer } = await import('@backy/http-api');
           const { default: pino } = await import('pino');
           const api = await ApiServer.start({
             backend: { jobs: () => [] },
             config: { listen: [{ host: '127.0.0.1', port: 0 }], tokens: [] },
             logger: pino({ level: 'silent' }),
             version: '0',
           });
           const r = await fetch(api.urls[0] + '/ui/');
           console.log(r.status, (await r.text()).includes('<script type="module" src="app.js">'));
           await api.close();`,
        ],
        app,
      ),
      'the packed web page',
    );
    expect(page.stdout.trim()).toBe('200 true');

    ok(backy('-b', 'by-name', 'init', 'backy-source-example', image), 'init by package name');
    ok(backy('-b', 'by-name', 'backup', 'manual:test'), 'backup');
    ok(backy('-b', 'by-name', 'restore', join(app, 'restored.img')), 'restore');
    expect((await readFile(join(app, 'restored.img'))).equals(data)).toBe(true);
    const status = ok(backy('-b', 'by-name', 'status'), 'status').stdout;
    expect(status).toContain('manual:test');

    const byPath = join(app, 'node_modules/backy-source-example/dist/index.js');
    ok(backy('-b', 'by-path', 'init', '-o', 'parallel=2', byPath, image), 'init by path');
    expect(await readFile(join(app, 'by-path/config'), 'utf8')).toContain('parallel: 2');
    ok(backy('-b', 'by-path', 'backup', 'manual:test'), 'backup by path');
    ok(backy('-b', 'by-path', 'restore', join(app, 'restored-2.img')), 'restore by path');
    expect((await readFile(join(app, 'restored-2.img'))).equals(data)).toBe(true);

    // Two broken plugins installed beside the CLI: one names another type, one lacks a dependency.
    const fake = async (name: string, code: string) => {
      await mkdir(join(app, 'node_modules', name), { recursive: true });
      await writeFile(
        join(app, 'node_modules', name, 'package.json'),
        JSON.stringify({ name, version: '1.0.0', type: 'module', exports: './index.js' }),
      );
      await writeFile(join(app, 'node_modules', name, 'index.js'), code);
    };
    await fake(
      'backy-source-renamed',
      "import { z } from 'zod';\nexport default { type: 'renamed', optionsSchema: z.object({}), create() {} };\n",
    );
    await fake('backy-source-incomplete', "import 'backy-not-installed';\nexport default {};\n");
    await mkdir(join(app, 'node_modules', 'backy-source-unbuilt'), { recursive: true });
    await writeFile(
      join(app, 'node_modules', 'backy-source-unbuilt', 'package.json'),
      JSON.stringify({
        name: 'backy-source-unbuilt',
        version: '1.0.0',
        type: 'module',
        exports: './dist/index.js',
      }),
    );
    const unbuilt = backy('-b', 'unbuilt', 'init', 'backy-source-unbuilt', image);
    expect(unbuilt.stderr.trim()).toMatch(
      /^backy: error: source package "backy-source-unbuilt" is installed, but its file .*backy-source-unbuilt\/dist\/index\.js is missing \(is the package built\?\)$/,
    );
    const renamed = backy('-b', 'renamed', 'init', 'backy-source-renamed', image);
    expect(renamed.code).toBe(1);
    expect(renamed.stderr.trim()).toMatch(
      /^backy: error: source package "backy-source-renamed" implements source type "renamed", not "backy-source-renamed"/,
    );
    const incomplete = backy('-b', 'incomplete', 'init', 'backy-source-incomplete', image);
    expect(incomplete.code).toBe(1);
    expect(incomplete.stderr.trim()).toMatch(
      /^backy: error: source package "backy-source-incomplete" cannot load its dependency "backy-not-installed" \(imported from .*backy-source-incomplete\/index\.js\)/,
    );

    const missing = backy('-b', 'nothing', 'init', 'backy-source-missing', image);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toMatch(
      /^backy: error: unknown source type "backy-source-missing": not built in .* no package of that name is installed beside backy \(.*\/app\/node_modules\)/,
    );
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    await rm(join(app, 'restored.img'));
  }, 900_000);

  it('a missing zstd binary is one line; --version, --help and status still work', async () => {
    // Every copy of the addon's platform binary in the installed app, wherever npm put it.
    const binaries: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        if (!entry.isDirectory()) continue;
        const path = join(dir, entry.name);
        if (/^node-zstd-linux-/.test(entry.name)) binaries.push(path);
        else await walk(path);
      }
    };
    await walk(join(app, 'node_modules'));
    expect(binaries.length, "the zstd addon's platform package is installed").toBeGreaterThan(0);
    for (const path of binaries) await rename(path, `${path}.hidden`);
    try {
      const backy = (...args: string[]) => run(join(app, 'node_modules/.bin/backy'), args, app);
      expect(ok(backy('--version'), 'backy --version').stdout).toMatch(/^backy \d+\.\d+\.\d+/);
      expect(ok(backy('--help'), 'backy --help').stdout).toContain('usage: backy');
      expect(ok(backy('-b', 'by-name', 'status'), 'status').stdout).toContain('manual:test');
      const image = join(app, 'disk.img');
      ok(backy('-b', 'no-zstd', 'init', 'backy-source-example', image), 'init');
      const backup = backy('-b', 'no-zstd', 'backup', 'manual:test');
      const restore = backy('-b', 'by-name', 'restore', join(app, 'restored-3.img'));
      if (typeof (zlib as { zstdCompressSync?: unknown }).zstdCompressSync === 'function') {
        // Node's own zstd (22.15 and later): no addon needed at all.
        ok(backup, "backup with Node's zstd");
        ok(restore, "restore with Node's zstd");
      } else {
        for (const [what, result] of [
          ['backup', backup],
          ['restore', restore],
        ] as const) {
          expect(result.code, `${what}: ${result.out}`).toBe(1);
          expect(result.stderr.trim().split('\n'), `${what}: one line`).toHaveLength(1);
          expect(result.stderr).toMatch(
            /^backy: error: zstd compression is not available: .*@toondepauw\/node-zstd-linux-[a-z0-9-]+, is not installed; reinstall backy/,
          );
        }
        // Nothing was written for the failed backup, nothing counted damaged: the old revision verifies
        // once the binary is back.
        expect(ok(backy('-b', 'no-zstd', 'status', '--json'), 'status --json').stdout).not.toContain(
          'manual:test',
        );
      }
    } finally {
      for (const path of binaries) await rename(`${path}.hidden`, path);
    }
    const backy = (...args: string[]) => run(join(app, 'node_modules/.bin/backy'), args, app);
    ok(backy('-b', 'by-name', 'verify'), 'verify once the binary is back');
  }, 300_000);
  it('back up, restore, verify and purge through the packed third-party backend, plain and encrypted', async () => {
    const backy = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      spawnSync(join(app, 'node_modules/.bin/backy'), args, {
        cwd: app,
        encoding: 'utf8',
        timeout: 300_000,
        env: { ...userEnv, ...env },
      });
    const okay = (r: ReturnType<typeof backy>, what: string) => {
      expect(r.status, `${what} failed:\n${r.stdout}${r.stderr}`).toBe(0);
      return r.stdout;
    };
    const image = join(app, 'store-disk.img');
    const data = Buffer.alloc(6 * MiB + 777);
    for (let i = 0; i < data.length; i += 512) data.writeUInt32LE((i * 2246822519) >>> 0, i);
    await writeFile(image, data);
    const key = join(app, 'store.key');
    okay(backy(['key', 'create', key], { BACKY_KEY_PASSPHRASE: '' }), 'key create');
    for (const [archive, extra] of [
      ['by-store', []],
      ['by-store-encrypted', ['--store', `encryption.key-file=${key}`]],
    ] as const) {
      const b = (...args: string[]) => backy(['-b', archive, ...args]);
      okay(
        b(
          'init',
          '--store',
          'type=backy-store-example',
          '--store',
          `path=${join(app, `${archive}-objects`)}`,
          ...extra,
          'file',
          image,
        ),
        `${archive}: init with the store by package name`,
      );
      expect(await readFile(join(app, archive, 'config'), 'utf8')).toContain('type: backy-store-example');
      okay(b('backup', 'daily'), `${archive}: backup`);
      // The objects are the backend's: flat files with percent-encoded names, revisions and marker included.
      const objects = await readdir(join(app, `${archive}-objects`));
      expect(
        objects.some((f) => f.startsWith('chunks%2F')),
        `${archive}: chunks in the backend`,
      ).toBe(true);
      expect(
        objects.some((f) => f.startsWith('revisions%2F')),
        `${archive}: revisions in the backend`,
      ).toBe(true);
      data.write(`changed for ${archive}`, 3 * MiB);
      await writeFile(image, data);
      okay(b('backup', 'daily'), `${archive}: second backup`);
      okay(b('verify'), `${archive}: verify`);
      okay(b('restore', join(app, `${archive}.img`)), `${archive}: restore`);
      expect((await readFile(join(app, `${archive}.img`))).equals(data), `${archive}: restored bytes`).toBe(
        true,
      );
      const chunks = () =>
        readdir(join(app, `${archive}-objects`)).then(
          (f) => f.filter((n) => n.startsWith('chunks%2F')).length,
        );
      const before = await chunks();
      okay(b('forget', '-r', '1'), `${archive}: forget the older revision`);
      okay(b('purge'), `${archive}: purge`);
      expect(await chunks(), `${archive}: purge removed the forgotten revision's own chunk`).toBeLessThan(
        before,
      );
      okay(b('verify'), `${archive}: verify after purge`);
      okay(b('restore', join(app, `${archive}-2.img`)), `${archive}: restore after purge`);
      expect((await readFile(join(app, `${archive}-2.img`))).equals(data)).toBe(true);
      await rm(join(app, `${archive}.img`));
      await rm(join(app, `${archive}-2.img`));
    }
  }, 600_000);
});
