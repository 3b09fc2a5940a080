import { builtinsForCommonJs, packageBuild, zodEnglishOnly } from '../../tsup.base.js';

const entries = {
  index: 'src/index.ts',
  'source/index': 'src/source/index.ts',
  'store/index': 'src/repository/index.ts',
  'testing/index': 'src/testing/index.ts',
  // Helpers without vitest, for the benchmarks and the demo.
  'testing/helpers': 'src/testing/helpers.ts',
};

export default packageBuild({
  entry: {
    ...entries,
    // The chunk worker thread's module, loaded by URL from beside the bundle (see chunk-workers.ts).
    'chunk-worker': 'src/store/chunk-worker.js',
    // The zod schemas for scripts/gen-schema.mjs; not in package.json's exports.
    'config-schemas': 'src/config-schemas.ts',
  },
  dts: { entry: entries },
  external: ['vitest'],
  // zod (~95 ES modules) and yaml (~70 CommonJS files) are resolved and read file by file on every
  // start; bundled into core's chunks they cost every command a third less CPU. Plugins never share
  // them with core (their option schemas are Standard Schemas, validated through `~standard`).
  noExternal: ['zod', 'yaml'],
  esbuildPlugins: [builtinsForCommonJs, zodEnglishOnly],
  // The config's JSON Schemas, from the zod schemas of the built code (a step of the package's build, not
  // a script in its published manifest).
  onSuccess: 'node scripts/gen-schema.mjs',
});
