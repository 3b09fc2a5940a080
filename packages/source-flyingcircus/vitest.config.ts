import { backyProject } from '../../tools/test-env/src/vitest-project.js';

export default backyProject('source-flyingcircus', {
  test: {
    // One Ceph cluster and two Consul agents (one enforcing ACLs) for all files, or the reason to skip.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // The files share the agents' snapshot/ prefix; run them one after the other.
    fileParallelism: false,
  },
});
