import { defineProject } from 'vitest/config';

export default defineProject({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    name: 'source-ceph-rbd',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // Starts a throw-away Ceph cluster (or records why the cluster tests must skip).
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
