import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'test-env',
    include: ['src/**/*.test.ts'],
  },
});
