import { backyProject } from '../../tools/test-env/src/vitest-project.js';

export default backyProject('source-ceph-rbd', {
  test: {
    // Starts a throw-away Ceph cluster (or records why the cluster tests must skip).
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
  },
});
