import { defineConfig, type Options } from 'tsup';

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
