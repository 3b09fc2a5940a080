import { backyProject } from '../../tools/test-env/src/vitest-project.js';

export default backyProject('source-nbd', {
  test: { testTimeout: 180_000, hookTimeout: 120_000 },
});
