import { closeSync, fstatSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './private-modes.js';

/** A log file that lines are appended to; writing it never throws (see `openAppendLog`). */
export interface AppendLog {
  /** Marks this as a stream for `pino(log)`. */
  readonly writable: true;
  /** pino destination interface: appends one line. */
  write(line: string): void;
  /** Opens the path again (after logrotate moved the file away). */
  reopen(): void;
  /** Inode of the file being written, null when none is open. */
  inode(): number | null;
  close(): void;
}

/**
 * Opens `path` for appending log lines. Logging must never stop the work it records: when the file
 * cannot be opened or written (a full disk, a read-only mount, a removed directory), `onFailure` is
 * called once (until a write works again) and the lines are dropped. pino's own file destination threw
 * from every log call on a full disk and then kept the process from exiting.
 */
export function openAppendLog(path: string, onFailure: (error: NodeJS.ErrnoException) => void): AppendLog {
  let fd: number | null = null;
  let failing = false;
  // Part of a record reached the file before a write failed (a full disk): the next record starts on a
  // line of its own, so that only the torn record is lost and the next one still parses.
  let torn = false;
  const open = () => {
    mkdirSync(dirname(path), { recursive: true, mode: PRIVATE_DIR_MODE });
    return openSync(path, 'a', PRIVATE_FILE_MODE);
  };
  const closeFd = () => {
    if (fd == null) return;
    try {
      closeSync(fd);
    } catch {}
    fd = null;
  };
  return {
    writable: true,
    write(line) {
      // One record, one write (with its leading newline after a torn one): appenders to the same file
      // never interleave within a record.
      const bytes = Buffer.from(torn ? `\n${line}` : line);
      let done = 0;
      try {
        fd ??= open();
        while (done < bytes.length) done += writeSync(fd, bytes, done);
        failing = false;
        torn = false;
      } catch (error) {
        if (done > 0) torn = true;
        if (!failing) onFailure(error as NodeJS.ErrnoException);
        failing = true;
      }
    },
    reopen() {
      closeFd();
      try {
        fd = open();
      } catch {
        // Tried again at the next line.
      }
    },
    inode() {
      try {
        return fd == null ? null : fstatSync(fd).ino;
      } catch {
        return null;
      }
    },
    close: closeFd,
  };
}
