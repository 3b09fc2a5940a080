/** The built `backy` binary, for the end-to-end tests of packages other than the CLI's own. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BACKY_BIN = fileURLToPath(new URL('../../../packages/cli/bin/backy.js', import.meta.url));
const CLI_DIST = fileURLToPath(new URL('../../../packages/cli/dist/index.js', import.meta.url));

/**
 * Why an end-to-end test through the binary must skip: `skip` (what else it lacks) or, when that is
 * null, an unbuilt CLI, whose skip is printed with `label` and fails the run under CI=true.
 */
export function skipWithoutCli(label: string, skip: string | null): string | null {
  if (skip != null) return skip;
  if (existsSync(CLI_DIST)) return null;
  const reason = 'the backy CLI is not built (run `pnpm build`)';
  if (process.env.CI === 'true')
    throw new Error(`CLI end-to-end test must not be skipped under CI=true: ${reason}`);
  console.warn(`[${label}] CLI end-to-end test skipped: ${reason}`);
  return reason;
}
