import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { BackyError } from '@backy/core';

/** The commands that change what the daemon does; on TCP they need a token (or `insecureTcp`). */
export const STATE_CHANGING_COMMANDS: ReadonlySet<string> = new Set(['run', 'runall', 'reload']);

/** What one client has proved: on the Unix socket its file permissions did that, on TCP a token. */
export interface ShellSession {
  /** May run the state-changing commands. */
  trusted: boolean;
  /** Who it is, for the log (`unix socket`, `127.0.0.1:51234`). */
  peer: string;
  /** Wrong tokens so far; the client is disconnected after the third. */
  failures: number;
}

/** Compares in constant time, whatever the lengths. */
export function tokenMatches(expected: string, given: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(expected), digest(given));
}

/**
 * Reads the shell's token (`global.telnet-token-file`): the first line, at least 16 characters. A file
 * other users may read is refused, as ssh refuses such a private key.
 */
export async function readTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new BackyError(
      'CONFIG_INVALID',
      `global.telnet-token-file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      { cause: error },
    );
  }
  const { mode } = await stat(path);
  if ((mode & 0o007) !== 0) {
    throw new BackyError(
      'CONFIG_INVALID',
      `global.telnet-token-file ${path} is accessible to other users (mode ${(mode & 0o777).toString(8)}); chmod o-rwx it`,
    );
  }
  const token = (text.split('\n')[0] ?? '').trim();
  if (token.length < 16 || /\s/.test(token)) {
    throw new BackyError(
      'CONFIG_INVALID',
      `global.telnet-token-file ${path}: the first line must be a token of at least 16 characters without spaces`,
    );
  }
  return token;
}
