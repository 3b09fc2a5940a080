import { backyProject } from '../../tools/test-env/src/vitest-project.js';

export default backyProject('cli', {
  test: {
    // Starts the S3 gateway on a throw-away Ceph cluster (~20-30 s; RGW_TEST_ENDPOINT reuses a running
    // one), or records why the S3 tests skip.
    globalSetup: ['test/global-setup.ts'],
    teardownTimeout: 60_000,
  },
});
