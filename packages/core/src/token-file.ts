import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { BackyError } from './errors.js';

/** Compares in constant time, whatever the lengths. */
export function tokenMatches(expected: string, given: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(expected), digest(given));
}

/**
 * Reads a token file (the shell's `global.telnet-token-file`, the API's `api.tokens.N.file`: `key` names it in errors): the first line, at least 16 characters. A file
 * other users may read is refused, as ssh refuses such a private key.
 */
export async function readTokenFile(path: string, key = 'global.telnet-token-file'): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${key} ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      { cause: error },
    );
  }
  const { mode } = await stat(path);
  if ((mode & 0o007) !== 0) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${key} ${path} is accessible to other users (mode ${(mode & 0o777).toString(8)}); chmod o-rwx it`,
    );
  }
  const token = (text.split('\n')[0] ?? '').trim();
  if (token.length < 16 || /\s/.test(token)) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${key} ${path}: the first line must be a token of at least 16 characters without spaces`,
    );
  }
  return token;
}
