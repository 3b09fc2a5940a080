import { MiB } from '@backy/core/testing';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { terminalStream } from './logger.js';
import { createProgressBar, etaSeconds, progressLine } from './progress.js';

/** An ANSI colour code (SGR), what NO_COLOR turns off. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding escape sequences is the point
const SGR = /\x1b\[[0-9;]*m/;

/**
 * A stand-in for a terminal's stderr that keeps what a screen would show: `\r` returns to the start of
 * the line, `ESC[K` erases to its end, `\n` starts a new line, anything else overwrites.
 */
function fakeTerminal(columns?: number) {
  const screen: string[] = [''];
  let col = 0;
  let written = '';
  return {
    isTTY: true as const,
    columns,
    write(text: string) {
      written += text;
      for (let i = 0; i < text.length; i++) {
        const row = screen.length - 1;
        if (text.startsWith('\x1b[K', i)) {
          screen[row] = screen[row]!.slice(0, col);
          i += 2;
        } else if (text[i] === '\r') col = 0;
        else if (text[i] === '\n') {
          screen.push('');
          col = 0;
        } else {
          const line = screen[row]!.padEnd(col);
          screen[row] = line.slice(0, col) + text[i] + line.slice(col + 1);
          col++;
        }
      }
      return true;
    },
    /** The lines on the screen, the cursor's (possibly empty) line last. */
    screen: () => [...screen],
    written: () => written,
  };
}

describe('progress bar', () => {
  it('keeps log lines off its line: each is written above the bar, which is drawn again below', () => {
    const term = fakeTerminal(100);
    const bar = createProgressBar(term);
    const log = pino({ level: 'info' }, terminalStream(term, { progress: bar, env: { NO_COLOR: '1' } }));
    bar.update('backup', 4 * MiB, 16 * MiB);
    log.info({ revision: 'r1' }, 'reading source file');
    log.warn('careful');
    const screen = term.screen();
    expect(screen).toHaveLength(3);
    expect(screen[0]).toMatch(/^\[\d\d:\d\d:\d\d\] INFO: reading source file \{"revision":"r1"\}$/);
    expect(screen[1]).toMatch(/^\[\d\d:\d\d:\d\d\] WARN: careful$/);
    expect(screen[2]).toMatch(/^backup {3}\[#{8}-{22}\] {2}25% 4\.0 MiB \/ 16\.0 MiB {2}\S+ \S+\/s$/);
    // Notes and warnings of the CLI go the same way; after finish() lines are written as they come.
    bar.around(() => term.write('backy: warning: a note\n'));
    bar.finish();
    bar.around(() => term.write('after\n'));
    expect(term.screen().slice(2)).toEqual(['backy: warning: a note', 'after', '']);
  });

  it('does not cut its text to nothing when the terminal reports 0 or no columns: 80 are assumed', () => {
    for (const columns of [0, undefined]) {
      const term = fakeTerminal(columns);
      const bar = createProgressBar(term);
      bar.update('backup', 8 * MiB, 16 * MiB);
      const [line] = term.screen();
      expect(line).toMatch(/^backup {3}\[#+-+\] {2}50% 8\.0 MiB \/ 16\.0 MiB {2}.+\/s$/);
      expect(line!.length).toBeLessThanOrEqual(79);
    }
    // A narrow terminal: the bar makes room for the numbers, nothing wraps.
    const narrow = fakeTerminal(40);
    createProgressBar(narrow).update('verify', 8 * MiB, 16 * MiB);
    const [short] = narrow.screen();
    expect(short!.startsWith('verify    50% 8.0 MiB / 16.0 MiB')).toBe(true);
    expect(short!.length).toBeLessThanOrEqual(39);
    expect(progressLine('backup', 1, 2, 1, 1)).toBe('b');
  });

  it('shows a verification in bytes with whole-byte rates', () => {
    // What a Ceph verification of 3 sampled chunks reports once it checked two (bytes, not chunks),
    // early on, when the rate is still below a byte a second.
    const line = progressLine('verify', 8 * MiB, 12 * MiB, 0.5773672055427251, 100);
    expect(line).toBe(`verify   [${'#'.repeat(20)}${'-'.repeat(10)}]  67% 8.0 MiB / 12.0 MiB  1 B/s`);
    expect(progressLine('backup', 1536, 0, 1536.4, 100)).toBe('backup   1.5 KiB  1.5 KiB/s');
  });

  it('shows the time left once the rate has settled, and none without a total or a useful estimate', () => {
    vi.useFakeTimers({ now: 1_000_000, toFake: ['Date'] });
    try {
      const term = fakeTerminal(100);
      const bar = createProgressBar(term);
      bar.update('backup', 0, 64 * MiB);
      vi.advanceTimersByTime(1000);
      bar.update('backup', 4 * MiB, 64 * MiB);
      expect(term.screen()[0]).toMatch(/ 4\.0 MiB\/s$/);
      vi.advanceTimersByTime(3000);
      // 16 MiB in 4 s: 48 MiB left at 4 MiB/s.
      bar.update('backup', 16 * MiB, 64 * MiB);
      expect(term.screen()[0]).toMatch(/ 4\.0 MiB\/s {2}ETA 12s$/);
    } finally {
      vi.useRealTimers();
    }
    expect(etaSeconds(30 * MiB, 0, MiB)).toBeNull();
    expect(etaSeconds(MiB, MiB, MiB)).toBeNull();
    expect(etaSeconds(0, 100 * 1024 ** 4, 1)).toBeNull();
    expect(progressLine('restore', 0, 2 * MiB, MiB / 60, 100, 120)).toMatch(/ 17\.1 KiB\/s {2}ETA 2m00s$/);
  });

  it('shows the rate of the current phase', () => {
    vi.useFakeTimers({ now: 1_000_000, toFake: ['Date'] });
    try {
      const term = fakeTerminal(100);
      const bar = createProgressBar(term);
      vi.advanceTimersByTime(8000);
      bar.update('backup', 16 * MiB, 16 * MiB);
      expect(term.screen()[0]).toMatch(/ 2\.0 MiB\/s$/);
      // A verification that starts 10 s later and checks 3 MiB in 2 s: 1.5 MiB/s, not 3 MiB in 20 s (and
      // the last MiB in about a second).
      vi.advanceTimersByTime(10_000);
      bar.update('verify', 0, 4 * MiB);
      vi.advanceTimersByTime(2000);
      bar.update('verify', 3 * MiB, 4 * MiB);
      expect(term.screen()[0]).toMatch(/^verify .* 3\.0 MiB \/ 4\.0 MiB {2}1\.5 MiB\/s {2}ETA 1s$/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('draws nothing with quiet or off a terminal, and never in colour', () => {
    const quiet = fakeTerminal(100);
    const bar = createProgressBar(quiet, { quiet: true });
    bar.update('backup', 1, 2);
    let ran = false;
    bar.around(() => {
      ran = true;
    });
    bar.finish();
    expect(ran).toBe(true);
    expect(quiet.written()).toBe('');
    const pipe = { ...fakeTerminal(100), isTTY: false };
    createProgressBar(pipe).update('backup', 1, 2);
    expect(pipe.written()).toBe('');
    const term = fakeTerminal(100);
    createProgressBar(term).update('backup', 1, 2);
    expect(term.written()).toContain('backup');
    expect(term.written()).not.toMatch(SGR);
  });
});
