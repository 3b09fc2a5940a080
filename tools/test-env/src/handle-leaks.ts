/**
 * Finds FileHandles that were never closed. Node closes such a handle when it is garbage collected and
 * only warns ("Closing file descriptor N on garbage collection"), which a test run would scroll past;
 * in backy a forgotten handle is usually a forgotten lock (a reader holds the store's shared lock), so
 * every test file fails on one, naming where it was opened.
 *
 * `fs/promises.open` is wrapped to remember each open handle's stack until it is closed; the warning's
 * descriptor number finds the stack. Handles opened before the wrap (none of backy's) are reported
 * without one.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';

export interface HandleLeak {
  fd: number;
  /** Where the handle was opened, or null when it was opened before tracking began. */
  openedAt: string | null;
}

type Open = typeof import('node:fs/promises').open;

const GC_CLOSE = /^Closing file descriptor (\d+) on garbage collection$/;

let installed: { leaks: HandleLeak[] } | null = null;

/** Starts tracking (once per process); returns the leaks found so far, which the caller may clear. */
export function trackHandleLeaks(): HandleLeak[] {
  if (installed) return installed.leaks;
  const require = createRequire(import.meta.url);
  const fsp = require('node:fs/promises') as { open: Open };
  const open = fsp.open;
  const openedAt = new Map<number, string>();
  const leaks: HandleLeak[] = [];
  const tracked: Open = async (...args) => {
    const stack = new Error(`FileHandle of ${String(args[0])}`).stack ?? String(args[0]);
    const handle = await open(...args);
    const fd = handle.fd;
    openedAt.set(fd, stack);
    const close = handle.close.bind(handle);
    handle.close = () => {
      // The number may be reused once closed: forget it first.
      if (openedAt.get(fd) === stack) openedAt.delete(fd);
      return close();
    };
    return handle;
  };
  fsp.open = tracked;
  // Named imports of node:fs/promises (`import { open }`) see the wrapper too.
  syncBuiltinESMExports();
  process.on('warning', (warning) => {
    const match = GC_CLOSE.exec(warning.message);
    if (!match) return;
    const fd = Number(match[1]);
    leaks.push({ fd, openedAt: openedAt.get(fd) ?? null });
    openedAt.delete(fd);
  });
  installed = { leaks };
  return leaks;
}

/** The leaks as one message for a failing test. */
export function describeLeaks(leaks: readonly HandleLeak[]): string {
  const parts = leaks.map(
    (l) =>
      `file descriptor ${l.fd}, closed by the garbage collector, opened ${
        l.openedAt ? `at:\n${l.openedAt.split('\n').slice(1).join('\n')}` : 'before tracking began'
      }`,
  );
  return `${leaks.length} FileHandle(s) never closed (a forgotten reader, lock or file):\n${parts.join('\n')}`;
}
