import { builtinModules } from 'node:module';
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
