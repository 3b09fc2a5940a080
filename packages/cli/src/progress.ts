import { formatBytes, formatDuration } from '@backy/core';

export interface ProgressBar {
  update(phase: string, done: number, total: number): void;
  finish(): void;
  /**
   * Runs `write`, which writes whole lines to the bar's terminal, with the bar taken off its line, and
   * draws the bar again below them: a log line never lands on the bar's line.
   */
  around(write: () => void): void;
}

export interface ProgressBarOptions {
  /** No bar at all (`--quiet`). Default false. */
  quiet?: boolean;
}

/** What the bar draws on: a terminal's stderr (tests hand in a stand-in). */
export interface ProgressStream {
  isTTY?: boolean;
  /** The terminal's width; 0 or missing when it cannot tell (then 80 is assumed). */
  columns?: number;
  write(text: string): unknown;
}

/** The width assumed when the terminal does not report one. */
const FALLBACK_COLUMNS = 80;
/** The bar's widest and narrowest `[###---]` part; narrower than the minimum, it is left out. */
const BAR_WIDTH = 30;
const MIN_BAR_WIDTH = 10;

const NOOP: ProgressBar = {
  update() {},
  finish() {},
  around(write) {
    write();
  },
};

/**
 * A one-line progress bar on a terminal's stderr; nothing when stderr is not a terminal or with `quiet`.
 * It uses no colours (so NO_COLOR has nothing to turn off), only `\r` and erase-line to redraw.
 */
export function createProgressBar(
  stream: ProgressStream = process.stderr,
  options: ProgressBarOptions = {},
): ProgressBar {
  if (!stream.isTTY || options.quiet === true) return NOOP;
  // The rate is of the current phase: a verification after a backup starts its own clock.
  let started = Date.now();
  let current: string | null = null;
  let last = 0;
  /** The bar as last drawn, or null when it is not on the screen. */
  let drawn: string | null = null;
  return {
    update(phase, done, total) {
      const now = Date.now();
      if (phase !== current) {
        if (current != null) started = now;
        current = phase;
        last = 0;
      }
      const complete = total > 0 && done >= total;
      if (now - last < 100 && !complete) return;
      last = now;
      const elapsed = (now - started) / 1000;
      const rate = done / Math.max(0.001, elapsed);
      // The first seconds' rate says little about the rest (caches, a sparse start).
      const eta = elapsed >= ETA_AFTER_SECONDS ? etaSeconds(done, total, rate) : null;
      drawn = `\r${progressLine(phase, done, total, rate, stream.columns, eta)}\x1b[K`;
      stream.write(drawn);
    },
    finish() {
      if (drawn != null) stream.write('\r\x1b[K');
      drawn = null;
    },
    around(write) {
      if (drawn == null) {
        write();
        return;
      }
      const bar = drawn;
      stream.write('\r\x1b[K');
      try {
        write();
      } finally {
        stream.write(bar);
      }
    },
  };
}

const ETA_AFTER_SECONDS = 2;
/** Longer than this, an estimate is no help (a rate that has just dropped): none is shown. */
const ETA_MAX_SECONDS = 7 * 86400;

/** Seconds left at `rate`, or null when there is no total, nothing left, or no useful estimate. */
export function etaSeconds(done: number, total: number, rate: number): number | null {
  if (total <= 0 || done >= total || !(rate > 0)) return null;
  const left = (total - done) / rate;
  return left <= ETA_MAX_SECONDS ? left : null;
}

/**
 * The bar's text for a terminal `columns` wide (80 when unknown), one column short of it so that it
 * never wraps: `backup   [#####-----]  50% 8.0 MiB / 16.0 MiB  4.0 MiB/s  ETA 2s`. Without a total (a diff
 * stream of unknown length) only bytes and the rate.
 */
export function progressLine(
  phase: string,
  done: number,
  total: number,
  rate: number,
  columns: number | undefined,
  eta: number | null = null,
): string {
  const room = Math.max(1, (columns != null && columns > 0 ? columns : FALLBACK_COLUMNS) - 1);
  const head = phase.padEnd(8);
  const speed = `${formatBytes(Math.round(rate))}/s${eta != null ? `  ETA ${formatDuration(eta)}` : ''}`;
  let line: string;
  if (total > 0) {
    const fraction = Math.min(1, done / total);
    const tail = `${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(done)} / ${formatBytes(total)}  ${speed}`;
    const width = Math.min(BAR_WIDTH, room - head.length - tail.length - 4);
    if (width >= MIN_BAR_WIDTH) {
      const filled = Math.round(fraction * width);
      line = `${head} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${tail}`;
    } else {
      line = `${head} ${tail}`;
    }
  } else {
    line = `${head} ${formatBytes(done)}  ${speed}`;
  }
  return line.slice(0, room);
}
