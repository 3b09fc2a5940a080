import { openAppendLog } from '@backy/core';
import pino, { type DestinationStream, type Logger, type StreamEntry } from 'pino';
import pretty from 'pino-pretty';

export interface LoggerOptions {
  /** Log file (JSON lines); none when null. */
  file: string | null;
  verbose: boolean;
  /** No readable lines on a terminal (--quiet): errors reach the user as the CLI's one-line message. */
  quiet?: boolean;
  /** Where readable lines go when it is a terminal (and JSON lines with -v when it is not). */
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

/**
 * JSON lines into the log file (debug and up) and, on a terminal, readable lines on stderr (info, or
 * debug with -v). Off a terminal stderr stays quiet except with -v: errors reach the user as the CLI's
 * one-line message and the exit status.
 */
export function createLogger(options: LoggerOptions): {
  logger: Logger;
  flush(): void;
  destinations: DestinationStream[];
} {
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
    streams.push({ level: 'debug', stream: dest });
  }
  if (options.quiet === true) {
    // --quiet: the log file only.
  } else if (options.stderr.isTTY === true) {
    streams.push({ level: options.verbose ? 'debug' : 'info', stream: terminalStream(options.stderr) });
  } else if (options.verbose) {
    streams.push({ level: 'debug', stream: options.stderr });
  }
  const logger = pino({ level: 'debug', base: { pid: process.pid } }, pino.multistream(streams));
  return {
    logger,
    destinations,
    flush() {
      for (const d of destinations) (d as { flushSync?: () => void }).flushSync?.();
    },
  };
}

/** Readable log lines for a terminal (the CLI's and the daemon's alike). */
export function terminalStream(stderr: NodeJS.WritableStream): DestinationStream {
  return pretty({
    destination: stderr,
    sync: true,
    // https://no-color.org: set and not empty means no ANSI colors.
    colorize: !process.env.NO_COLOR,
    translateTime: 'SYS:HH:MM:ss',
    ignore: 'pid,hostname',
  });
}
