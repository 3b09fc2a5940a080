import { formatBytes } from '@backy/core';

export interface ProgressBar {
  update(phase: string, done: number, total: number): void;
  finish(): void;
}

const NOOP: ProgressBar = { update() {}, finish() {} };

/** A one-line progress bar on a terminal's stderr; nothing when stderr is not a terminal or with `quiet`. */
export function createProgressBar(
  stream: NodeJS.WriteStream = process.stderr,
  options: { quiet?: boolean } = {},
): ProgressBar {
  if (!stream.isTTY || options.quiet === true) return NOOP;
  const started = Date.now();
  let last = 0;
  let shown = false;
  return {
    update(phase, done, total) {
      const now = Date.now();
      const complete = total > 0 && done >= total;
      if (now - last < 100 && !complete) return;
      last = now;
      const width = 30;
      const rate = done / Math.max(0.001, (now - started) / 1000);
      let line: string;
      if (total > 0) {
        const fraction = Math.min(1, done / total);
        const filled = Math.round(fraction * width);
        line = `${phase.padEnd(8)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(done)} / ${formatBytes(total)}  ${formatBytes(rate)}/s`;
      } else {
        // The source does not know the total yet (a diff stream): bytes and rate, no bar.
        line = `${phase.padEnd(8)} ${formatBytes(done)}  ${formatBytes(rate)}/s`;
      }
      stream.write(`\r${line.slice(0, (stream.columns ?? 100) - 1)}\x1b[K`);
      shown = true;
    },
    finish() {
      if (shown) stream.write('\r\x1b[K');
      shown = false;
    },
  };
}
