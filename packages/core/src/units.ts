/** Binary size units, for sizes written as `4 * MiB`. */
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };

/** Parses `30m`, `1h`, `1d`, `7w`, `1h30m` or bare seconds into seconds. Returns null if malformed. */
export function parseDuration(value: string | number): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : null;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) {
    const n = Number(text);
    return n > 0 ? n : null;
  }
  const re = /(\d+(?:\.\d+)?)\s*([smhdw])/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m != null; m = re.exec(text)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (matched !== text.length || total <= 0) return null;
  return total;
}

/** Formats seconds compactly: `45s`, `3m12s`, `2h05m`, `3d04h`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

const SIZE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/**
 * Formats a byte count with binary units: `0 B`, `4.0 MiB`, `1.2 GiB`. `style: 'backy2'` is how backy
 * 2.x's status printed sizes: two decimals and `kiB` (`511.99 kiB`, `60.00 GiB`). Bytes are whole:
 * a rate of 0.57 bytes a second is `1 B`.
 */
export function formatBytes(bytes: number, style: 'short' | 'backy2' = 'short'): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < SIZE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  return style === 'backy2'
    ? `${value.toFixed(2)} ${unit === 1 ? 'kiB' : SIZE_UNITS[unit]}`
    : `${value.toFixed(1)} ${SIZE_UNITS[unit]}`;
}

/** Parses `4M`, `4MiB`, `1G`, `512k` or a bare number of bytes. Returns null if malformed. */
export function parseBytes(value: string | number): number | null {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(value);
  if (m == null) return null;
  const power = ' kmgtp'.indexOf((m[2] || ' ').toLowerCase());
  return Math.round(Number(m[1]) * 1024 ** power);
}
