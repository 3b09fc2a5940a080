import { readFileSync } from 'node:fs';

let cached: string | null = null;

/** The CLI package's version (from its package.json: beside `src/` and `dist/` alike). */
export function cliVersion(): string {
  if (cached == null) {
    try {
      cached = (
        JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
      ).version;
    } catch {
      cached = 'unknown';
    }
  }
  return cached;
}
