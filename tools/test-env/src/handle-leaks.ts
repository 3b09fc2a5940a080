/**
 * Finds FileHandles that were never closed. Node closes such a handle when it is garbage collected and
 * only warns ("Closing file descriptor N on garbage collection"), which a test run would scroll past;
 * in backy a forgotten handle is usually a forgotten lock (a reader holds the store's shared lock), so
 * every test file fails on one, naming where it was opened.
 *
 * `fs/promises.open` is wrapped: each handle it returns is registered, with the stack of its opening, in
 * a FinalizationRegistry, and its `close` marks it closed. A handle collected unclosed is a leak. Keyed
 * on the handle itself, not on its descriptor number, which the kernel hands out again at once.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';

export interface HandleLeak {
  /** The path or descriptor it was opened with. */
  opened: string;
  /** Where it was opened. */
  stack: string;
}

type Open = typeof import('node:fs/promises').open;

interface Opening extends HandleLeak {
  closed: boolean;
}

/** Per process, not per module instance: `fs/promises` is wrapped once even if this file loads again. */
const INSTALLED = Symbol.for('backy.test-env.handle-leaks');
type Global = { [INSTALLED]?: HandleLeak[] };

/** Starts tracking (once per process); returns the leaks found so far, which the caller may clear. */
export function trackHandleLeaks(): HandleLeak[] {
  const global = globalThis as Global;
  const installed = global[INSTALLED];
  if (installed) return installed;
  const leaks: HandleLeak[] = [];
  const registry = new FinalizationRegistry<Opening>((opening) => {
    if (!opening.closed) leaks.push({ opened: opening.opened, stack: opening.stack });
  });
  const require = createRequire(import.meta.url);
  const fsp = require('node:fs/promises') as { open: Open };
  const open = fsp.open;
  const tracked: Open = async (...args) => {
    const opened = String(args[0]);
    const stack = (new Error(`FileHandle of ${opened}`).stack ?? '').split('\n').slice(2).join('\n');
    const handle = await open(...args);
    // The record must not reference the handle, or it is never collected.
    const opening: Opening = { opened, stack, closed: false };
    registry.register(handle, opening, opening);
    const close = handle.close.bind(handle);
    // Streams, `readLines` and `await using` close through this too.
    handle.close = () => {
      opening.closed = true;
      registry.unregister(opening);
      return close();
    };
    return handle;
  };
  fsp.open = tracked;
  // Named imports of node:fs/promises (`import { open }`) see the wrapper too.
  syncBuiltinESMExports();
  global[INSTALLED] = leaks;
  return leaks;
}

/**
 * Collects until finalizers have had their turn. One collection is not enough: a handle's promise
 * machinery keeps it reachable for a round, and finalizers run in a later task.
 */
export async function collectGarbage(gc: () => void, rounds = 4): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 10));
}

/** The leaks as one message for a failing test. */
export function describeLeaks(leaks: readonly HandleLeak[]): string {
  const parts = leaks.map((l) => `${l.opened}, opened at:\n${l.stack}`);
  return `${leaks.length} FileHandle(s) never closed, left to the garbage collector (a forgotten reader, lock or file):\n${parts.join('\n')}`;
}
