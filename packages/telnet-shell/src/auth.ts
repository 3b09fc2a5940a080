import { readTokenFile, tokenMatches } from '@backy/core';

export { readTokenFile, tokenMatches };

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
