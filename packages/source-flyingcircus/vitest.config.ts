import { defineProject } from 'vitest/config';

export default defineProject({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    name: 'source-flyingcircus',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // One Ceph cluster and two Consul agents (one enforcing ACLs) for all files, or the reason to skip.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // The files share the agents' snapshot/ prefix; run them one after the other.
    fileParallelism: false,
  },
});
