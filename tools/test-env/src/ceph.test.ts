import { describe, expect, it } from 'vitest';
import { rbdDiff } from './ceph.js';

describe('the rbd diff v1 stream the Ceph tests write images with', () => {
  it('is the header, the size, one w record per extent and the end tag, integers little-endian', () => {
    const stream = rbdDiff(0x1_0000_0002, [
      { offset: 3, data: Buffer.from('ab') },
      { offset: 0x100, data: Buffer.from('c') },
    ]);
    const u64 = (hex: string) => Buffer.from(hex, 'hex');
    expect(stream).toEqual(
      Buffer.concat([
        Buffer.from('rbd diff v1\ns'),
        u64('0200000001000000'),
        Buffer.from('w'),
        u64('0300000000000000'),
        u64('0200000000000000'),
        Buffer.from('abw'),
        u64('0001000000000000'),
        u64('0100000000000000'),
        Buffer.from('ce'),
      ]),
    );
  });
});
