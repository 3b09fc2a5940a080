import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { SYSTEM_PATH_ENV, skipWithout } from '@backy/test-env';
import { describe, expect, it } from 'vitest';
import { lzoDecompressWithHeader } from './lzo.js';
import { mmh3Hex } from './mmh3.js';

/** Compresses with python-lzo, the library backy 2.x wrote its chunks with. */
function pythonLzo(data: Buffer): Buffer {
  const r = spawnSync(
    'python3',
    ['-c', 'import lzo,sys; sys.stdout.buffer.write(lzo.compress(sys.stdin.buffer.read()))'],
    {
      input: data,
      env: SYSTEM_PATH_ENV,
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  if (r.status !== 0) throw new Error(`python-lzo failed: ${r.stderr}`);
  return r.stdout;
}

const samples: [string, Buffer][] = [
  ['empty', Buffer.alloc(0)],
  ['one byte', Buffer.from('x')],
  ['text', Buffer.from('hello hello hello hello hello world'.repeat(3))],
  ['random', randomBytes(100_000)],
  ['zeros (long matches)', Buffer.alloc(4 * 1024 * 1024)],
  [
    'a 4 MiB VM-like chunk',
    Buffer.concat([
      randomBytes(1 << 20),
      Buffer.alloc(1 << 20),
      Buffer.from('abcdefgh'.repeat(1 << 18)),
      randomBytes(5000),
      Buffer.alloc((1 << 20) - 5000, 0x41),
    ]),
  ],
  ['short periods', Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i % 3 === 0 ? 1 : i % 7)))],
];

describe.skipIf(skipWithout('LZO against python-lzo', 'python3') != null)('LZO1X decompression', () => {
  for (const [name, data] of samples) {
    it(`reads what python-lzo wrote: ${name}`, () => {
      const file = pythonLzo(data);
      expect(file[0]).toBe(0xf0);
      expect(lzoDecompressWithHeader(file).equals(data)).toBe(true);
    });
  }

  it('rejects damaged data with an error, never a wrong result', () => {
    const data = Buffer.from('hello hello hello hello hello world'.repeat(50));
    const file = pythonLzo(data);
    expect(() => lzoDecompressWithHeader(file.subarray(0, file.length - 3))).toThrow(/LZO data is damaged/);
    const longer = Buffer.from(file);
    longer.writeUInt32BE(data.length + 10, 1);
    expect(() => lzoDecompressWithHeader(longer)).toThrow(/LZO data is damaged/);
    expect(() => lzoDecompressWithHeader(Buffer.from('nope'))).toThrow(/no python-lzo header/);
  });
});

describe('MurmurHash3 x64 128 as backy 2.x named chunks', () => {
  it('matches the known vectors of Python mmh3.hash_bytes', () => {
    // mmh3's documentation: hash_bytes("foo") == b'aE\xf5\x01W\x86q\xe2\x87}\xba+\xe4\x87\xaf~'
    expect(mmh3Hex(Buffer.from('foo'))).toBe(
      Buffer.from('aE\xf5\x01W\x86q\xe2\x87}\xba+\xe4\x87\xaf~', 'latin1').toString('hex'),
    );
    expect(mmh3Hex(Buffer.alloc(0))).toBe('00000000000000000000000000000000');
  });
});
