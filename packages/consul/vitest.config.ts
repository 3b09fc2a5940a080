import { backyProject } from '../../tools/test-env/src/vitest-project.js';

export default backyProject('consul');
