// What the CLI needs before it knows the command: the global options, the environment variable of
// the archive directory and the exit statuses. Kept apart from reference.ts (the help pages, which
// quote values from @backy/core) so that `backy --version` and the start of every command load no
// more than argument parsing.
import type { BackyErrorCode } from '@backy/core';
import type { OptionSpecs } from './command.js';

/** The environment variable that names the archive directory when `-b` is not given. */
export const BACKY_DIR_ENV = 'BACKY_DIR';
/** The environment variable that names the central config when `-c` is not given. */
export const BACKY_CONFIG_ENV = 'BACKY_CONFIG';
/** The environment variable with the HTTP API's token (the token itself) when `--token-file` is not given. */
export const BACKY_API_TOKEN_ENV = 'BACKY_API_TOKEN';

/** Options before the command name; the same for every command. */
export const GLOBAL_OPTIONS = {
  backupdir: {
    type: 'string',
    short: 'b',
    valueName: 'DIR',
    description: 'the archive directory',
    defaultText: `$${BACKY_DIR_ENV}, else the current directory`,
    complete: 'dir',
  },
  logfile: {
    type: 'string',
    short: 'l',
    valueName: 'FILE',
    description: 'log file (JSON lines)',
    defaultText: 'DIR/backy.log',
    complete: 'file',
  },
  verbose: { type: 'boolean', short: 'v', description: 'debug lines on the terminal and in the log' },
  quiet: {
    type: 'boolean',
    short: 'q',
    description: 'no progress bar and no info lines on the terminal; warnings and errors still show',
  },
  help: { type: 'boolean', short: 'h', description: 'this help; `backy COMMAND --help` for a command' },
  version: { type: 'boolean', short: 'V', description: 'print the version' },
} as const satisfies OptionSpecs;

/** Exit statuses of BackyError codes that are not the general failure 1. */
export const EXIT_CODES: Partial<Record<BackyErrorCode, number>> = {
  USAGE: 2,
  LOCKED: 69,
  SUPERSEDED: 75,
  ABORTED: 130,
};
/**
 * When stdout's reader went away (`backy status | head -1`): no message, and the status of a Unix tool
 * killed by SIGPIPE (128 + 13). Node ignores SIGPIPE, so the write fails with EPIPE instead.
 */
export const EXIT_PIPE_CLOSED = 141;
