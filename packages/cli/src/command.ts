import type { ParseArgsConfig } from 'node:util';
import type { Archive } from '@backy/core';
import type { Logger } from 'pino';
import type { ProgressBar } from './progress.js';

export interface GlobalOptions {
  verbose: boolean;
  logfile: string | null;
  baseDir: string;
}

export interface CommandContext {
  global: GlobalOptions;
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** Opens the archive at -b and sets up logging into its backy.log. */
  openArchive(): Promise<Archive>;
  logger(): Logger;
  progress: ProgressBar;
  signal: AbortSignal;
  stdout: NodeJS.WriteStream;
  /** For status lines that are not the command's output (they would spoil a pipe on stdout). */
  stderr: NodeJS.WriteStream;
  print(line: string): void;
  /** One line on stderr for the operator, beside stdout's data (e.g. what a restore wrote). */
  note(line: string): void;
  /** One `backy: warning: …` line on stderr. */
  warn(line: string): void;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options?: ParseArgsConfig['options'];
  /** Minimum and maximum positionals. */
  positionals?: [number, number];
  /** Long-running commands get SIGINT/SIGTERM turned into an abort. */
  abortable?: boolean;
  run(ctx: CommandContext): Promise<number | undefined>;
}
