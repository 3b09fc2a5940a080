import { readFile } from 'node:fs/promises';
import type { SecretConfig } from '@backy/core';

/**
 * A secret's value: inline, or the first line of its file, read at each use so that a rotated secret
 * takes effect without a reload. Throws a one-line message naming the file.
 */
export async function secretValue(secret: SecretConfig, what: string): Promise<string> {
  if (secret.value != null) return secret.value;
  let text: string;
  try {
    text = await readFile(secret.file!, 'utf8');
  } catch (error) {
    throw new Error(
      `cannot read ${what} from ${secret.file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  const line = text.split('\n', 1)[0]!.trim();
  if (line === '') throw new Error(`${what} file ${secret.file} is empty`);
  return line;
}
