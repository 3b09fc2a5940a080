import { packageBuild } from '../../tsup.base.js';

export default packageBuild({
  entry: {
    index: 'src/index.ts',
    'testing/index': 'src/testing/index.ts',
    // The chunk worker thread's module, loaded by URL from beside the bundle (see chunk-workers.ts).
    'chunk-worker': 'src/store/chunk-worker.js',
  },
  dts: { entry: { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' } },
  external: ['vitest'],
});
