import { defineConfig } from 'vitest/config';

// Vitest 4 replaced vitest.workspace.ts with `test.projects`: one project per package. Each package's
// vitest.config.ts resolves workspace packages through their `source` export condition (TypeScript).
export default defineConfig({
  test: {
    projects: ['packages/*', 'tools/*'],
    reporters: ['default', './scripts/vitest-summary-reporter.ts'],
  },
});
