// MurmurHash3 x64 128-bit (seed 0), as backy 2.2–2.5 named its chunks: the hex of Python's
// `mmh3.hash_bytes(data)`, i.e. the two 64-bit halves each in little-endian byte order. The hashing is
// murmurhash3js-revisited's (it matches the C++ reference); it prints each half big-endian, so the
// bytes of each half are swapped here.
import { createRequire } from 'node:module';

interface Murmur {
  x64: { hash128(data: Uint8Array, seed?: number): string };
}
const murmur = createRequire(import.meta.url)('murmurhash3js-revisited') as Murmur;

export function mmh3Hex(data: Uint8Array): string {
  const hex = murmur.x64.hash128(data, 0);
  const swap = (half: string) => (half.match(/../g) ?? []).reverse().join('');
  return swap(hex.slice(0, 16)) + swap(hex.slice(16, 32));
}
