/**
 * The Vitest project every workspace package shares (the root config's `test.projects` finds the
 * packages' configs; Vitest >= 3.2 replaced vitest.workspace.ts by that). A package's vitest.config.ts:
 *
 *   import { backyProject } from '../../tools/test-env/src/vitest-project.js';
 *   export default backyProject('core');
 *
 * By path, not as `@backy/test-env/...`: Vite bundles a config's relative imports but leaves package
 * imports to Node, which cannot load this TypeScript file on Node 20.
 */
import { fileURLToPath } from 'node:url';
import { defineProject, mergeConfig, type UserWorkspaceConfig } from 'vitest/config';

const handleLeaks = fileURLToPath(new URL('./handle-leaks.setup.ts', import.meta.url));

/** Project `name` (what `vitest --project NAME` selects), with `overrides` merged into the shared base. */
export function backyProject(name: string, overrides: UserWorkspaceConfig = {}): UserWorkspaceConfig {
  return mergeConfig(
    defineProject({
      // Workspace packages are tested from their TypeScript sources (the `source` export condition).
      resolve: { conditions: ['source'] },
      ssr: { resolve: { conditions: ['source'] } },
      test: {
        name,
        include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
        testTimeout: 60_000,
        hookTimeout: 60_000,
        // A FileHandle left to the garbage collector fails the file (handle-leaks.ts).
        setupFiles: [handleLeaks],
      },
    }),
    overrides,
  );
}
