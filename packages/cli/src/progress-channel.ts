import { writeSync } from 'node:fs';
import type { ProgressBar } from './progress.js';

/**
 * The scheduler's channel for a child's progress: with `BACKY_PROGRESS_FD=N` (set by the daemon, which
 * reads fd N; `@backy/scheduler`'s PROGRESS_FD_ENV), each update is also written there as a JSON line
 * `{"phase","done","total"}`, at most once a second and always at a phase's end. Nothing otherwise.
 */
export const PROGRESS_FD_ENV = 'BACKY_PROGRESS_FD';

const INTERVAL_MS = 1000;

/** `bar`, also reporting to the channel named by `env` when there is one. */
export function withProgressChannel(bar: ProgressBar, env: NodeJS.ProcessEnv = process.env): ProgressBar {
  const value = env[PROGRESS_FD_ENV];
  const fd = value != null && /^\d+$/.test(value) ? Number(value) : null;
  if (fd == null || fd < 3) return bar;
  let open = true;
  let last = 0;
  let lastPhase: string | null = null;
  const send = (phase: string, done: number, total: number) => {
    try {
      writeSync(fd, `${JSON.stringify({ phase, done, total })}\n`);
    } catch {
      // The daemon went away or closed its end: the backup goes on without telling it.
      open = false;
    }
  };
  return {
    update(phase, done, total) {
      bar.update(phase, done, total);
      if (!open) return;
      const now = Date.now();
      const complete = total > 0 && done >= total;
      if (phase === lastPhase && now - last < INTERVAL_MS && !complete) return;
      last = now;
      lastPhase = phase;
      send(phase, done, total);
    },
    finish: () => bar.finish(),
    around: (write) => bar.around(write),
  };
}
