import { createRequire } from 'node:module';
import { openAppendLog } from '@backy/core';
import type { DestinationStream, Logger, default as Pino, StreamEntry } from 'pino';
import type { ProgressBar } from './progress.js';

// pino (with its ~20 files) is loaded when a logger is made, and pino-pretty (~40 files) when a
// terminal gets readable lines: a command that logs nothing, or logs off a terminal, does not pay for
// them at start-up. Both are CommonJS, so require() loads them synchronously where they are needed.
const require = createRequire(import.meta.url);
const loadPino = (): typeof Pino => require('pino') as typeof Pino;
const loadPrettyFactory = () => (require('pino-pretty') as typeof import('pino-pretty')).prettyFactory;

/** Where the CLI's readable lines go: its stderr (tests hand in a stand-in). */
export interface LogStream {
  isTTY?: boolean;
  write(text: string): unknown;
}

export interface LoggerOptions {
  /** Log file (JSON lines); none when null. */
  file: string | null;
  verbose: boolean;
  /** Only warnings and errors on the terminal (`--quiet`); the log file keeps its level. Default false. */
  quiet?: boolean;
  /** Where readable lines go when it is a terminal (and JSON lines with -v when it is not). */
  stderr: LogStream;
  /** The progress bar on the same terminal: log lines are written around it. Default none. */
  progress?: ProgressBar;
  /** Where NO_COLOR is read (default `process.env`). */
  env?: NodeJS.ProcessEnv;
}

export interface CliLogging {
  logger: Logger;
  flush(): void;
  destinations: DestinationStream[];
  /**
   * Records the error that ends the command, in the log file only (the terminal has the CLI's one line
   * for it; with -v stderr gets the record too). With its stack, unless a record already carried this
   * error or one it was caused by: one stack trace per failure.
   */
  recordFailure(error: unknown, fields: Record<string, unknown>, message: string): void;
}

/**
 * JSON lines into the log file (info and up, debug with -v) and, on a terminal, readable lines on
 * stderr (info, debug with -v, only warnings and errors with `quiet`). Off a terminal stderr stays quiet
 * except with -v: errors reach the user as the CLI's one-line message and the exit status.
 */
export function createLogger(options: LoggerOptions): CliLogging {
  const level = options.verbose ? 'debug' : 'info';
  const fileStreams: StreamEntry[] = [];
  const streams: StreamEntry[] = [];
  const destinations: DestinationStream[] = [];
  if (options.file != null) {
    const path = options.file;
    const dest = openAppendLog(path, (error) =>
      options.stderr.write(
        `backy: warning: cannot write log file ${path} (${error.code ?? error.message}); its lines are lost\n`,
      ),
    );
    destinations.push(dest);
    fileStreams.push({ level, stream: dest });
  }
  const terminalLevel = options.quiet === true ? 'warn' : level;
  if (options.stderr.isTTY === true) {
    streams.push({
      level: terminalLevel,
      stream: terminalStream(options.stderr, {
        progress: options.progress,
        verbose: options.verbose,
        env: options.env,
      }),
    });
  } else if (options.verbose) {
    streams.push({ level: terminalLevel, stream: options.stderr });
  }
  // Errors whose stack a record already holds: the final record of a failure then names it only.
  const logged = new WeakSet<object>();
  const serializers = {
    err: (error: unknown) => {
      if (error instanceof Error) logged.add(error);
      return loadPino().stdSerializers.err(error as Error);
    },
  };
  const pino = loadPino();
  const settings = { level, base: { pid: process.pid }, serializers };
  const logger = pino(settings, pino.multistream([...fileStreams, ...streams]));
  const fileLogger = pino(settings, pino.multistream(fileStreams));
  return {
    logger,
    destinations,
    flush() {
      for (const d of destinations) (d as { flushSync?: () => void }).flushSync?.();
    },
    recordFailure(error, fields, message) {
      const known = causes(error).some((e) => logged.has(e));
      (options.verbose ? logger : fileLogger).error(known ? fields : { err: error, ...fields }, message);
    },
  };
}

/** The error and its causes, innermost last. */
function causes(error: unknown): object[] {
  const chain: object[] = [];
  for (let e = error; e instanceof Error && !chain.includes(e); e = e.cause) chain.push(e);
  return chain;
}

/** NO_COLOR (https://no-color.org): set and not empty turns colours off. */
export function colorsWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.NO_COLOR == null || env.NO_COLOR === '';
}

export interface TerminalStreamOptions {
  /** A progress bar on the same terminal: each line is written with the bar taken off its line. */
  progress?: ProgressBar | undefined;
  /** With -v, errors keep their stack (on lines of their own); else each record is one line. */
  verbose?: boolean | undefined;
  /** Where NO_COLOR is read (default `process.env`). */
  env?: NodeJS.ProcessEnv | undefined;
}

/**
 * Readable log lines for a terminal (the CLI's and the daemon's alike): one line a record, `[12:00:01]
 * INFO: backup completed {"revision":"…","size":…}`, an error as its message (its stack is in the log
 * file), in colour unless NO_COLOR is set.
 */
export function terminalStream(stderr: LogStream, options: TerminalStreamOptions = {}): DestinationStream {
  const format = loadPrettyFactory()({
    colorize: colorsWanted(options.env),
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname',
    singleLine: true,
    // Else pino-pretty gives `err` lines of its own, even as a string (with -v: the stack).
    ...(options.verbose ? {} : { errorLikeObjectKeys: [] }),
  });
  const write = (text: string) => {
    if (options.progress == null) stderr.write(text);
    else options.progress.around(() => stderr.write(text));
  };
  return {
    write(line: string) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        write(line);
        return;
      }
      if (!options.verbose) {
        // An error is its message on the record's line: its stack is the log file's.
        for (const key of ['err', 'error']) {
          const value = record[key] as { message?: unknown } | null | undefined;
          if (typeof value === 'object' && typeof value?.message === 'string') record[key] = value.message;
        }
      }
      write(format(record));
    },
  };
}
