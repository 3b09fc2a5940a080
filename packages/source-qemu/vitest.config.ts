import { backyProject } from '../../tools/test-env/src/vitest-project.js';

export default backyProject('source-qemu', {
  test: { testTimeout: 180_000, hookTimeout: 120_000 },
});
