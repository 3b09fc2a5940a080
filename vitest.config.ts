import { defineConfig } from 'vitest/config';

// Vitest 4 replaced vitest.workspace.ts with `test.projects`: one project per package.
// The `source` export condition points workspace packages at their TypeScript sources.
export default defineConfig({
  test: {
    projects: ['packages/*'],
  },
});
