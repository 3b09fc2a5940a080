import { randomBytes } from 'node:crypto';

/** The alphabet of Python's shortuuid, used by backy 2.x for revision IDs. */
export const ID_ALPHABET = '23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
export const ID_LENGTH = 22;

/** Encodes a 128-bit number as 22 base57 digits, most significant first. */
export function encodeShortId(value: bigint): string {
  const base = BigInt(ID_ALPHABET.length);
  let out = '';
  let n = value;
  while (n > 0n) {
    out = ID_ALPHABET[Number(n % base)] + out;
    n /= base;
  }
  return out.padStart(ID_LENGTH, ID_ALPHABET[0]);
}

/** A new random revision ID (a version 4 UUID in shortuuid form). */
export function newRevisionId(): string {
  const bytes = randomBytes(16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return encodeShortId(BigInt(`0x${bytes.toString('hex')}`));
}

const ID_PATTERN = new RegExp(`^[${ID_ALPHABET}]{${ID_LENGTH}}$`);

export function isRevisionId(value: string): boolean {
  return ID_PATTERN.test(value);
}
