import { parseVerifyBudget, type VerifyBudget } from '@backy/core/source';
import { z } from 'zod';

/** How much of a fresh revision the file source reads back and compares with the file. */
export type VerifyMode =
  | { kind: 'full' }
  | { kind: 'written' }
  | { kind: 'changed' }
  | { kind: 'budget'; budget: VerifyBudget; text: string };

const verifyMode = z.union([z.string(), z.number()]).transform((value, ctx): VerifyMode => {
  const text = String(value).trim();
  if (text === 'full' || text === 'written' || text === 'changed') return { kind: text };
  const budget = parseVerifyBudget(typeof value === 'number' ? `${value}s` : text);
  if (typeof budget === 'string') {
    ctx.addIssue({
      code: 'custom',
      message: `expected full, written, changed, or a budget such as 30s, 5% or "30s 5%": ${budget}`,
    });
    return z.NEVER;
  }
  return { kind: 'budget', budget, text };
});

/** The file source's options (`source:` of an archive config with `type: file`). */
export interface FileSourceOptions {
  /** Path of the image file or block device to back up. */
  filename: string;
  /** Accepted for configs written for backy 2.x; copy-on-write is a matter of the archive's layout here. */
  cow?: boolean;
  /**
   * What a backup reads back to verify (default `written`): `written` the chunks this backup stored (the
   * ones it reused are only checked to be in the store; re-reading old chunks is `backy verify`'s job, run
   * by the scheduler's verify jobs); `full` every chunk; `changed` the stored chunks plus a random 1% of
   * the rest; a budget (`30s`, `5%`, `30s 5%`) the stored chunks first,
   * then random others, until the time or the share of all chunks is reached.
   */
  verify?: VerifyMode;
}

// The type is written out (not `z.infer`) so that the published declarations do not name zod;
// options.test.ts holds the schema to it.
export const fileSourceOptions = z.strictObject({
  filename: z.string().min(1),
  cow: z.boolean().optional(),
  verify: verifyMode.optional(),
});
