import { parseDuration } from '../units.js';

/** Share of the chunks a sampling verification checks unless told otherwise (1%). */
export const DEFAULT_SAMPLE_SHARE = 0.01;

/** Picks `count` distinct random indexes below `total`, ascending. */
export function sampleIndexes(total: number, count: number, random: () => number = Math.random): number[] {
  const n = Math.min(total, count);
  if (n * 2 > total) {
    const all = Array.from({ length: total }, (_, i) => i);
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(random() * (total - i));
      [all[i], all[j]] = [all[j]!, all[i]!];
    }
    return all.slice(0, n).sort((a, b) => a - b);
  }
  const picked = new Set<number>();
  while (picked.size < n) picked.add(Math.floor(random() * total));
  return [...picked].sort((a, b) => a - b);
}

/** A limit on a verification: at most `seconds`, at most `share` (0–1] of the chunks, or both. */
export interface VerifyBudget {
  seconds?: number;
  share?: number;
}

/**
 * Parses a verification budget: a duration (`30s`, `2m`, bare seconds), a percentage (`5%`), or both
 * separated by white space or a comma (`30s 5%`: whichever is reached first). Returns an error message
 * for anything else.
 */
export function parseVerifyBudget(text: string): VerifyBudget | string {
  const terms = text
    .trim()
    .split(/[\s,]+/)
    .filter((t) => t !== '');
  if (terms.length === 0 || terms.length > 2)
    return 'expected a time (e.g. 30s), a percentage (e.g. 5%) or both';
  const budget: VerifyBudget = {};
  for (const term of terms) {
    const percent = /^(\d+(?:\.\d+)?)%$/.exec(term);
    if (percent != null) {
      const value = Number(percent[1]);
      if (budget.share != null) return `two percentages in "${text}"`;
      if (!(value > 0 && value <= 100)) return `percentage ${term} must be above 0% and at most 100%`;
      budget.share = value / 100;
      continue;
    }
    const seconds = parseDuration(term);
    if (seconds == null) return `"${term}" is neither a time (e.g. 30s, 2m) nor a percentage (e.g. 5%)`;
    if (budget.seconds != null) return `two times in "${text}"`;
    budget.seconds = seconds;
  }
  return budget;
}
