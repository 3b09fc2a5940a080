import { describe, expect, it } from 'vitest';
import { encodeShortId, ID_ALPHABET, isRevisionId, newRevisionId } from './ids.js';

describe('revision ids', () => {
  it('are 22 base57 characters and unique', () => {
    const ids = new Set(Array.from({ length: 2000 }, () => newRevisionId()));
    expect(ids.size).toBe(2000);
    for (const id of ids) {
      expect(id).toHaveLength(22);
      expect([...id].every((c) => ID_ALPHABET.includes(c))).toBe(true);
      expect(isRevisionId(id)).toBe(true);
    }
  });

  it('encodes numbers most significant digit first, padded with the first letter', () => {
    expect(encodeShortId(0n)).toBe('2'.repeat(22));
    expect(encodeShortId(57n)).toBe(`${'2'.repeat(20)}32`);
    expect(encodeShortId(2n ** 128n - 1n)).toHaveLength(22);
  });

  it('rejects strings that are not ids', () => {
    expect(isRevisionId('0'.repeat(22))).toBe(false);
    expect(isRevisionId('abc')).toBe(false);
  });
});
