import { backyProject } from '../../tools/test-env/src/vitest-project.js';

export default backyProject('fleet', {
  test: { testTimeout: 180_000, hookTimeout: 120_000 },
});
