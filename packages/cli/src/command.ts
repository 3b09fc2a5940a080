import type { Archive } from '@backy/core';
import type { Logger } from 'pino';
import type { ProgressBar } from './progress.js';

export interface GlobalOptions {
  verbose: boolean;
  /** No progress bar and no info lines on the terminal; errors and warnings still show. */
  quiet: boolean;
  logfile: string | null;
  baseDir: string;
}

/**
 * One option of a command: what parseArgs needs, and what `--help`, the man page and the shell
 * completions say about it (all four are derived from this one definition).
 */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** One line for `--help`, the man page and the completions. */
  description: string;
  /** The value a string option has when it is not given. */
  default?: string;
  /** The default in words when it is not a value parseArgs fills in (e.g. `the current directory`). */
  defaultText?: string;
  /** The value's name in help texts (`SPEC`, `FILE`); `VALUE` when not given. */
  valueName?: string;
  /** What a shell offers as the value: files, directories or a fixed list. */
  complete?: 'file' | 'dir' | readonly string[];
}

export type OptionSpecs = Record<string, OptionSpec>;

export interface CommandContext {
  global: GlobalOptions;
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /**
   * Opens the archive at -b and sets up logging into its backy.log. `offline`: a remote store that
   * cannot be reached is a warning, and the archive has the directory's copies of its revisions.
   */
  /** `admin`: for a command that deletes (expire, forget, purge): the store's admin credentials. */
  openArchive(options?: { offline?: boolean; admin?: boolean; attach?: boolean }): Promise<Archive>;
  logger(): Logger;
  progress: ProgressBar;
  signal: AbortSignal;
  stdout: NodeJS.WriteStream;
  /** For status lines that are not the command's output (they would spoil a pipe on stdout). */
  stderr: NodeJS.WriteStream;
  print(line: string): void;
  /** The one JSON document of `--json` on stdout. */
  printJson(value: unknown): void;
  /** One line on stderr for the operator, beside stdout's data (e.g. what a restore wrote); none with --quiet. */
  note(line: string): void;
  /** One `backy: warning: …` line on stderr. */
  warn(line: string): void;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options?: OptionSpecs;
  /** Minimum and maximum positionals. */
  positionals?: [number, number];
  /** What a shell offers for the positional arguments: files, or a fixed list (for the first one). */
  completeArguments?: 'file' | 'dir' | readonly string[];
  /** Long-running commands get SIGINT/SIGTERM turned into an abort. */
  abortable?: boolean;
  run(ctx: CommandContext): Promise<number | undefined>;
}

/** What every command also takes. */
export const HELP_OPTION: OptionSpec = { type: 'boolean', short: 'h', description: 'this help' };

/** A command's options as `--help`, the man page and the completions list them: its own, then -h. */
export function commandOptions(c: Command): OptionSpecs {
  return { ...(c.options ?? {}), help: HELP_OPTION };
}

/** The `version` of every `--json` document (its meaning: json-output.ts). */
export const JSON_FORMAT_VERSION = 1;

/** The `--json` option, described once for every command that has it. */
export const JSON_OPTION: OptionSpec = {
  type: 'boolean',
  description: 'print one JSON document on stdout (shapes in docs/json.md); notes and warnings go to stderr',
};

/** `-r SPEC`, described once for every command that names revisions. */
export function revisionOption(what: string, fallback?: string): OptionSpec {
  return {
    type: 'string',
    short: 'r',
    valueName: 'SPEC',
    description: `${what}; see \`backy help specs\``,
    ...(fallback != null ? { default: fallback } : {}),
  };
}

/** `--token-file FILE` of the commands that talk to the daemon's HTTP API (api-client.ts chooses otherwise). */
export const API_TOKEN_FILE_OPTION: OptionSpec = {
  type: 'string',
  valueName: 'FILE',
  description: "the HTTP API token's file (first line)",
  defaultText: "$BACKY_API_TOKEN, else the config's first api token this user can read",
  complete: 'file',
};
