import { fstatSync, statSync } from 'node:fs';
import pino from 'pino';

export interface ReopeningLogFile {
  /** The pino destination to build the logger on. */
  readonly stream: pino.DestinationStream;
  /** Opens the configured path again (after logrotate moved the file away). */
  reopen(): void;
  /** Stops watching and closes the file. */
  close(): void;
}

/**
 * A log file that survives rotation: `reopen()` (called on SIGHUP) opens the path again, and a watcher
 * does the same by itself when the path no longer names the file being written (moved or deleted), so
 * `logrotate` works with or without a postrotate signal.
 */
export function openLogFile(path: string, options: { checkIntervalMs?: number } = {}): ReopeningLogFile {
  // Synchronous writes: a daemon logs little, and nothing is lost when it is killed.
  const destination = pino.destination({ dest: path, sync: true, mkdir: true, append: true });
  const currentInode = (): number | null => {
    try {
      return fstatSync((destination as unknown as { fd: number }).fd).ino;
    } catch {
      return null;
    }
  };
  const reopen = () => destination.reopen();
  const timer = setInterval(() => {
    let onDisk: number | null;
    try {
      onDisk = statSync(path).ino;
    } catch {
      onDisk = null;
    }
    if (onDisk == null || onDisk !== currentInode()) {
      try {
        reopen();
      } catch {
        // The directory may be gone for a moment; the next check tries again.
      }
    }
  }, options.checkIntervalMs ?? 2000);
  timer.unref();
  return {
    stream: destination,
    reopen,
    close() {
      clearInterval(timer);
      destination.flushSync?.();
      destination.end();
    },
  };
}
