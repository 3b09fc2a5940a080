// Where things are, from src/ and from the built dist/ alike (both sit right under tools/bench).
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root; the benchmarks keep their work directories under it (see .gitignore). */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** The `backy` binary of @backy/cli, run as users run it. */
export const BACKY_BIN = join(
  dirname(createRequire(import.meta.url).resolve('@backy/cli/package.json')),
  'bin/backy.js',
);
