import { backyProject } from './src/vitest-project.js';

export default backyProject('test-env');
