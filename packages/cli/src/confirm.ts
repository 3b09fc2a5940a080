import { createInterface } from 'node:readline/promises';
import { BackyError } from '@backy/core';

/**
 * Whether a revision spec names a set rather than one revision: `all`, `tag:NAME`, `trust:STATE`, or
 * anything that matched more than one. Deleting by such a spec needs `--force` (or a yes on a terminal):
 * `forget -r all` once took a whole history, manual revisions included, without a question.
 */
export function selectsSet(spec: string, matched: number): boolean {
  const text = spec.trim();
  return matched > 1 || text === 'all' || text.startsWith('tag:') || text.startsWith('trust:');
}

/**
 * Asks `question [y/N]` on the terminal and resolves true for a yes. Without a terminal on both stdin
 * and stderr it does not ask: it throws the USAGE error `refusal` (a script must say --force).
 */
export async function confirm(stderr: NodeJS.WriteStream, question: string, refusal: string): Promise<void> {
  if (!process.stdin.isTTY || !stderr.isTTY) throw new BackyError('USAGE', refusal);
  const rl = createInterface({ input: process.stdin, output: stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new BackyError('USAGE', 'not confirmed; nothing was changed');
  } finally {
    rl.close();
  }
}
