import { backyProject } from '../../tools/test-env/src/vitest-project.js';

export default backyProject('store-s3', {
  test: {
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
  },
});
