import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, parseBytes, parseDuration } from './units.js';

describe('durations', () => {
  it.each([
    ['30m', 1800],
    ['1h', 3600],
    ['1d', 86400],
    ['7w', 7 * 7 * 86400],
    ['1h30m', 5400],
    ['90', 90],
    [45, 45],
  ])('parses %s', (input, seconds) => {
    expect(parseDuration(input)).toBe(seconds);
  });

  it.each(['', 'abc', '1x', '-5', '0', '1h foo', 'h1'])('rejects %j', (input) => {
    expect(parseDuration(input)).toBeNull();
  });

  it('formats', () => {
    expect(formatDuration(5)).toBe('5s');
    expect(formatDuration(192)).toBe('3m12s');
    expect(formatDuration(7500)).toBe('2h05m');
    expect(formatDuration(3 * 86400 + 4 * 3600)).toBe('3d04h');
  });
});

describe('sizes', () => {
  it('formats and parses binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(4 * 1024 * 1024)).toBe('4.0 MiB');
    // A rate below a byte a second, as a verification of a few chunks shows at first: whole bytes.
    expect(formatBytes(0.5773672055427251)).toBe('1 B');
    expect(formatBytes(1023.4)).toBe('1023 B');
    expect(parseBytes('4M')).toBe(4 * 1024 * 1024);
    expect(parseBytes('1GiB')).toBe(1024 ** 3);
    expect(parseBytes('12')).toBe(12);
    expect(parseBytes('x')).toBeNull();
  });
});

describe('formatBytes in the style of backy 2.x status', () => {
  it('prints two decimals and kiB', () => {
    expect(formatBytes(524277, 'backy2')).toBe('511.99 kiB');
    expect(formatBytes(60 * 1024 ** 3, 'backy2')).toBe('60.00 GiB');
    expect(formatBytes(17, 'backy2')).toBe('17 B');
  });
});
