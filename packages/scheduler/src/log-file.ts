import { statSync } from 'node:fs';
import { openAppendLog } from '@backy/core';
import type pino from 'pino';

export interface ReopeningLogFile {
  /** The pino destination to build the logger on. */
  readonly stream: pino.DestinationStream;
  /** Opens the configured path again (after logrotate moved the file away). */
  reopen(): void;
  /** Stops watching and closes the file. */
  close(): void;
}

export interface LogFileOptions {
  /**
   * Called when the file cannot be written, once until a write works again (the lines in between are
   * lost). Required: the log itself cannot carry that news, and a library does not print.
   */
  onFailure: (error: NodeJS.ErrnoException) => void;
  /** Milliseconds between checks that the path still names the file being written (default 2000). */
  checkIntervalMs?: number;
}

/**
 * The daemon's log file. It survives rotation: `reopen()` (called on SIGHUP) opens the path again, and a
 * watcher does the same by itself when the path no longer names the file being written (moved or
 * deleted), so `logrotate` works with or without a postrotate signal. Lines are written synchronously (a
 * daemon logs little, and nothing is lost when it is killed), and a log that cannot be written (a full
 * disk) never stops the daemon: `onFailure` hears of it, and logging resumes once writes work again.
 */
export function openLogFile(path: string, options: LogFileOptions): ReopeningLogFile {
  const log = openAppendLog(path, options.onFailure);
  log.reopen();
  const timer = setInterval(() => {
    let onDisk: number | null;
    try {
      onDisk = statSync(path).ino;
    } catch {
      onDisk = null;
    }
    if (onDisk == null || onDisk !== log.inode()) log.reopen();
  }, options.checkIntervalMs ?? 2000);
  timer.unref();
  return {
    stream: log,
    reopen: () => log.reopen(),
    close() {
      clearInterval(timer);
      log.close();
    },
  };
}
