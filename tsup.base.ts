import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { defineConfig, type Options } from 'tsup';

type Plugin = NonNullable<Options['esbuildPlugins']>[number];

/**
 * For CommonJS packages bundled into an ES module (`noExternal`): their `require('process')` would
 * throw there ("Dynamic require … is not supported"). A built-in required so becomes an ES import of
 * it, whose namespace has the same members.
 */
export const builtinsForCommonJs: Plugin = {
  name: 'builtins-for-commonjs',
  setup(build) {
    const builtins = new Set(builtinModules);
    build.onResolve({ filter: /^[a-z_/:]+$/ }, (args) => {
      const name = args.path.replace(/^node:/, '');
      if (args.kind !== 'require-call' || !builtins.has(name)) return undefined;
      return { path: name, namespace: 'builtin-esm' };
    });
    build.onLoad({ filter: /.*/, namespace: 'builtin-esm' }, (args) => ({
      contents: `export * from 'node:${args.path}';`,
      loader: 'js',
    }));
  },
};

/**
 * zod's root namespace re-exports all 64 of its message locales (`z.locales`, 313 kB of the 830 kB
 * bundled) although only English is ever configured; bundled, every command would parse them at start.
 * This keeps `en` (which zod configures by default) and drops the rest: backy never calls
 * `z.config(z.locales.xx())`.
 */
export const zodEnglishOnly: Plugin = {
  name: 'zod-english-only',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) => {
      if (!/[\\/]zod[\\/]v4[\\/](classic|core)[\\/]?$/.test(args.resolveDir)) return undefined;
      return { path: join(args.resolveDir, '../locales/index.js'), namespace: 'zod-english-only' };
    });
    build.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(join(dirname(args.path), 'en.js'))};`,
      loader: 'js',
      resolveDir: dirname(args.path),
    }));
  },
};

/** The build every package shares: ESM for Node 20, with .d.ts and source maps. */
export function packageBuild(overrides: Options = {}) {
  return defineConfig({
    entry: { index: 'src/index.ts' },
    format: ['esm'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20',
    ...overrides,
  });
}
