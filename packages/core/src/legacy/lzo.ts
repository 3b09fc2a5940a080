// LZO1X decompression, for the chunk files of backy 2.2–2.5 (written by python-lzo's `lzo.compress`:
// a 5-byte header, 0xF0 and the uncompressed length as a big-endian u32, then LZO1X-1 data).
// Written here because no maintained pure-JavaScript LZO library exists on npm (the `lzo` package is a
// native addon built with node-gyp); it only decompresses, and checks every bound so that a damaged
// file is an error, never a read past a buffer. The format is the one of lzo1x_d.ch in the LZO library.
import { BackyError } from '../errors.js';

const corrupt = (why: string) => new BackyError('CHUNK_CORRUPT', `LZO data is damaged: ${why}`);

/** Decompresses python-lzo's `compress` output (header included). */
export function lzoDecompressWithHeader(file: Uint8Array): Buffer {
  if (file.length < 5 || (file[0] !== 0xf0 && file[0] !== 0xf1)) throw corrupt('no python-lzo header');
  const length = ((file[1]! << 24) | (file[2]! << 16) | (file[3]! << 8) | file[4]!) >>> 0;
  return lzo1xDecompress(file.subarray(5), length);
}

/** Decompresses raw LZO1X data into exactly `length` bytes. */
export function lzo1xDecompress(input: Uint8Array, length: number): Buffer {
  const out = Buffer.alloc(length);
  let ip = 0;
  let op = 0;
  const byte = (): number => {
    if (ip >= input.length) throw corrupt('input ends early');
    return input[ip++]!;
  };
  const literals = (n: number) => {
    if (ip + n > input.length) throw corrupt('input ends inside a literal run');
    if (op + n > length) throw corrupt('output longer than its header says');
    out.set(input.subarray(ip, ip + n), op);
    ip += n;
    op += n;
  };
  const copyMatch = (from: number, n: number) => {
    if (from < 0) throw corrupt('match before the start of the output');
    if (op + n > length) throw corrupt('output longer than its header says');
    for (let i = 0; i < n; i++) out[op++] = out[from + i]!; // may overlap: byte by byte
  };
  /** A length that continues in zero bytes (each adding 255) and a final byte. */
  const longLength = (base: number): number => {
    let t = 0;
    for (;;) {
      const b = byte();
      if (b !== 0) return t + base + b;
      t += 255;
    }
  };

  type State = 'loop' | 'firstLiteralRun' | 'match' | 'matchNext';
  let state: State = 'loop';
  let t = 0;
  if (input.length > 0 && input[0]! > 17) {
    t = byte() - 17;
    if (t < 4) state = 'matchNext';
    else {
      literals(t);
      state = 'firstLiteralRun';
    }
  }
  for (;;) {
    if (state === 'loop') {
      t = byte();
      if (t >= 16) {
        state = 'match';
        continue;
      }
      if (t === 0) t = longLength(15);
      literals(t + 3);
      state = 'firstLiteralRun';
      continue;
    }
    if (state === 'firstLiteralRun') {
      t = byte();
      if (t >= 16) {
        state = 'match';
        continue;
      }
      const from = op - 0x801 - (t >> 2) - (byte() << 2);
      copyMatch(from, 3);
    } else if (state === 'matchNext') {
      literals(t);
      t = byte();
      state = 'match';
      continue;
    } else {
      // state === 'match'
      if (t >= 64) {
        const from = op - 1 - ((t >> 2) & 7) - (byte() << 3);
        copyMatch(from, (t >> 5) + 1);
      } else if (t >= 32) {
        t &= 31;
        if (t === 0) t = longLength(31);
        const lo = byte();
        const hi = byte();
        copyMatch(op - 1 - ((lo | (hi << 8)) >> 2), t + 2);
      } else if (t >= 16) {
        let from = op - ((t & 8) << 11);
        t &= 7;
        if (t === 0) t = longLength(7);
        const lo = byte();
        const hi = byte();
        from -= (lo | (hi << 8)) >> 2;
        if (from === op) {
          // End of stream.
          if (op !== length) throw corrupt(`output is ${op} bytes, its header says ${length}`);
          if (ip !== input.length) throw corrupt('data after the end of the stream');
          return out;
        }
        copyMatch(from - 0x4000, t + 2);
      } else {
        const from = op - 1 - (t >> 2) - (byte() << 2);
        copyMatch(from, 2);
      }
    }
    // After a match: 0–3 literals follow, counted by the low bits of the match's last instruction byte.
    t = input[ip - 2]! & 3;
    if (t === 0) state = 'loop';
    else state = 'matchNext';
  }
}
