import pino, { type Logger } from 'pino';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger that keeps its lines as objects; `BACKY_TEST_LOG=1` echoes them to stderr. */
export function captureLogger(): { logger: Logger; lines: LogLine[]; warnings: () => LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(line: string) {
        lines.push(JSON.parse(line) as LogLine);
        if (process.env.BACKY_TEST_LOG) process.stderr.write(line);
      },
    },
  );
  return { logger, lines, warnings: () => lines.filter((l) => l.level === 40) };
}
