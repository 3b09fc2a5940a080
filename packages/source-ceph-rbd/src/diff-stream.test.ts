import { describe, expect, it } from 'vitest';
import { encodeRbdDiff, parseRbdDiff, RbdDiffParser, type RbdDiffRecord } from './diff-stream.js';

const u64 = (value: number | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value));
  return b;
};
const u32 = (value: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value);
  return b;
};
const header = Buffer.from('rbd diff v1\n');
const bytes = (...parts: (string | Buffer)[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));

/** Feeds `input` to a parser in pieces of `step` bytes; joins consecutive data pieces of one record. */
function parseInSteps(input: Buffer, step: number): { records: RbdDiffRecord[]; maxPiece: number } {
  const parser = new RbdDiffParser();
  const records: RbdDiffRecord[] = [];
  let maxPiece = 0;
  for (let at = 0; at < input.length; at += step) {
    for (const record of parser.push(input.subarray(at, at + step))) {
      if (record.type === 'data') {
        maxPiece = Math.max(maxPiece, record.data.length);
        const last = records.at(-1);
        if (last?.type === 'data' && last.offset + last.data.length === record.offset) {
          records[records.length - 1] = { ...last, data: Buffer.concat([last.data, record.data]) };
          continue;
        }
        records.push({ ...record, data: Buffer.from(record.data) });
      } else records.push(record);
    }
  }
  parser.finish();
  return { records, maxPiece };
}

const sample: RbdDiffRecord[] = [
  { type: 'from-snap', name: 'backy-A' },
  { type: 'to-snap', name: 'backy-B' },
  { type: 'size', size: 1 << 20 },
  { type: 'data', offset: 0, data: Buffer.from('hello world') },
  { type: 'zero', offset: 4096, length: 65536 },
  { type: 'data', offset: 70000, data: Buffer.alloc(3000, 0x5a) },
  { type: 'data', offset: (1 << 20) - 1, data: Buffer.from('!') },
  { type: 'end' },
];

describe('RbdDiffParser', () => {
  it('parses every record type from a hand-built stream', () => {
    const input = bytes(
      header,
      'f',
      u32(3),
      'old',
      't',
      u32(3),
      'new',
      's',
      u64(8192),
      'w',
      u64(100),
      u64(5),
      'abcde',
      'z',
      u64(4096),
      u64(4096),
      'e',
    );
    const { records } = parseInSteps(input, input.length);
    expect(records).toEqual([
      { type: 'from-snap', name: 'old' },
      { type: 'to-snap', name: 'new' },
      { type: 'size', size: 8192 },
      { type: 'data', offset: 100, data: Buffer.from('abcde') },
      { type: 'zero', offset: 4096, length: 4096 },
      { type: 'end' },
    ]);
  });

  it('gives the same records however the input is split, and never holds more than one input piece of data', () => {
    const input = encodeRbdDiff(sample);
    for (const step of [1, 2, 3, 7, 13, 64, 1000, input.length]) {
      const { records, maxPiece } = parseInSteps(input, step);
      expect(records).toEqual(sample);
      expect(maxPiece).toBeLessThanOrEqual(step);
    }
  });

  it('accepts a diff without a from-snap (a full export-diff) and empty snapshot names', () => {
    const records: RbdDiffRecord[] = [
      { type: 'to-snap', name: '' },
      { type: 'size', size: 0 },
      { type: 'end' },
    ];
    expect(parseInSteps(encodeRbdDiff(records), 5).records).toEqual(records);
  });

  it('reports a stream cut anywhere before its end record as truncated', () => {
    const input = encodeRbdDiff(sample);
    for (let cut = 0; cut < input.length; cut++) {
      expect(() => parseInSteps(input.subarray(0, cut), 17), `cut at ${cut}`).toThrow(
        /^truncated rbd diff stream: input ended at byte \d+/,
      );
    }
  });

  it.each([
    ['a foreign header', bytes('rbd image v2\n', 'e'), /not an rbd diff v1 stream/],
    ['the v2 format', bytes('rbd diff v2\n', 'e'), /unsupported rbd diff stream version "rbd diff v2"/],
    ['an unknown tag', bytes(header, 's', u64(10), 'x'), /at byte 21: unknown record tag 0x78/],
    [
      'data before the size',
      bytes(header, 'w', u64(0), u64(1), 'a', 'e'),
      /data record 'w' before the size record/,
    ],
    [
      'a record beyond the image',
      bytes(header, 's', u64(10), 'w', u64(8), u64(4), 'abcd', 'e'),
      /extends beyond the image size 10/,
    ],
    [
      'overlapping records',
      bytes(header, 's', u64(10), 'z', u64(0), u64(5), 'z', u64(4), u64(2), 'e'),
      /overlaps or precedes/,
    ],
    [
      'out-of-order records',
      bytes(header, 's', u64(10), 'z', u64(5), u64(1), 'z', u64(0), u64(1), 'e'),
      /overlaps or precedes/,
    ],
    [
      'metadata after data',
      bytes(header, 's', u64(10), 'z', u64(0), u64(1), 't', u32(1), 'x', 'e'),
      /metadata record 't' after data records/,
    ],
    ['a second size record', bytes(header, 's', u64(10), 's', u64(20), 'e'), /second size record/],
    ['an absurd name length', bytes(header, 'f', u32(1 << 30)), /snapshot name of 1073741824 bytes/],
    [
      'an offset beyond 2^53',
      bytes(header, 's', u64(2n ** 60n)),
      /image size 1152921504606846976 is out of range/,
    ],
    ['bytes after the end record', bytes(header, 's', u64(0), 'e', 'junk'), /data after the end record/],
  ])('rejects %s', (_what, input, message) => {
    expect(() => parseInSteps(input, 3)).toThrow(message);
  });

  it('throws BackyErrors with code SOURCE_FAILED', () => {
    try {
      parseInSteps(bytes('garbage garbage'), 4);
      expect.unreachable();
    } catch (error) {
      expect((error as { code?: string }).code).toBe('SOURCE_FAILED');
    }
  });
});

describe('parseRbdDiff', () => {
  it('parses an async byte stream incrementally', async () => {
    const input = encodeRbdDiff(sample);
    async function* pieces() {
      for (let at = 0; at < input.length; at += 100) yield input.subarray(at, at + 100);
    }
    const seen: string[] = [];
    for await (const record of parseRbdDiff(pieces())) seen.push(record.type);
    expect(seen.filter((t) => t !== 'data')).toEqual(['from-snap', 'to-snap', 'size', 'zero', 'end']);
    expect(seen.filter((t) => t === 'data').length).toBeGreaterThan(3);
  });

  it('fails at the end of a truncated async stream after yielding what it could', async () => {
    const input = encodeRbdDiff(sample).subarray(0, 60);
    const seen: string[] = [];
    const run = async () => {
      for await (const record of parseRbdDiff([input])) seen.push(record.type);
    };
    await expect(run()).rejects.toThrow(/truncated rbd diff stream: input ended at byte 60/);
    expect(seen).toContain('size');
  });
});
