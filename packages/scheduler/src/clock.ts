/** Time and timers, so the daemon can run on a fake clock in tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.max(0, Math.min(ms, 2 ** 31 - 1))),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** A signal that aborts `ms` from now on `clock`; `cancel()` clears its timer once it is not needed. */
export function timeoutSignal(clock: Clock, ms: number): { signal: AbortSignal; cancel(): void } {
  const controller = new AbortController();
  const handle = clock.setTimeout(
    () => controller.abort(new DOMException('The operation timed out', 'TimeoutError')),
    ms,
  );
  return { signal: controller.signal, cancel: () => clock.clearTimeout(handle) };
}
