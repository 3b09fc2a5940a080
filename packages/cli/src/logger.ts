import { closeSync, openSync, writeSync } from 'node:fs';
import pino, { type DestinationStream, type Logger, type StreamEntry } from 'pino';
import pretty from 'pino-pretty';

export interface LoggerOptions {
  /** Log file (JSON lines); none when null. */
  file: string | null;
  verbose: boolean;
  /** Is stderr a terminal? Then readable lines go there. */
  tty: boolean;
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
    const dest = logFile(options.file);
    destinations.push(dest);
    streams.push({ level: 'debug', stream: dest });
  }
  if (options.tty) {
    streams.push({
      level: options.verbose ? 'debug' : 'info',
      stream: pretty({
        destination: 2,
        sync: true,
        colorize: true,
        translateTime: 'SYS:HH:MM:ss',
        ignore: 'pid,hostname',
      }),
    });
  } else if (options.verbose) {
    streams.push({ level: 'debug', stream: pino.destination({ dest: 2, sync: true }) });
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

/**
 * The archive's log file, appended to line by line. Logging must never stop the work it records: when
 * the file cannot be opened or written (a full disk, a read-only mount), one warning goes to stderr and
 * the lines are dropped. pino's own file destination threw from every log call and then kept the
 * process from exiting, so a restore from an archive on a full disk hung after finishing.
 */
function logFile(path: string): DestinationStream & { flushSync(): void } {
  let fd: number | null = null;
  let failed = false;
  const fail = (error: unknown) => {
    if (failed) return;
    failed = true;
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    process.stderr.write(`backy: warning: cannot write log file ${path} (${code}); its lines are lost\n`);
  };
  return {
    write(line: string) {
      if (failed) return;
      try {
        fd ??= openSync(path, 'a');
        const bytes = Buffer.from(line);
        for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done);
      } catch (error) {
        fail(error);
        if (fd != null) closeSync(fd);
        fd = null;
      }
    },
    flushSync() {},
  };
}
