import { packageBuild } from '../../tsup.base.js';

export default packageBuild({
  entry: { index: 'src/index.ts', 'source/index': 'src/source/index.ts', 'testing/index': 'src/testing/index.ts' },
  external: ['vitest'],
});
