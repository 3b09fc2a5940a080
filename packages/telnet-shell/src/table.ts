// The look of a compact cli-table3 table, drawn in linear time. cli-table3 lays cells out with an
// algorithm that is quadratic in the number of cells (for row and column spans we never use): 1,000
// jobs took half a second. `table.test.ts` checks the output is identical to cli-table3's.

export type Align = 'left' | 'right';

/** Width of text in terminal columns; the shell shows ASCII (job names, tags, times) only. */
function width(text: string): number {
  return text.length;
}

function pad(text: string, size: number, align: Align): string {
  const fill = ' '.repeat(Math.max(0, size - width(text)));
  return align === 'right' ? fill + text : text + fill;
}

/** Renders `head` and `rows` as a box-drawn table; `aligns` per column (default left). */
export function renderTable(
  head: readonly string[],
  rows: readonly (readonly string[])[],
  aligns: readonly Align[] = [],
): string {
  const widths = head.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))) + 2);
  const rule = (left: string, mid: string, right: string) =>
    left + widths.map((w) => '─'.repeat(w)).join(mid) + right;
  const line = (cells: readonly string[]) =>
    `│${widths.map((w, i) => ` ${pad(cells[i] ?? '', w - 2, aligns[i] ?? 'left')} `).join('│')}│`;
  const out = [rule('┌', '┬', '┐'), line(head)];
  if (rows.length > 0) out.push(rule('├', '┼', '┤'));
  for (const row of rows) out.push(line(row));
  out.push(rule('└', '┴', '┘'));
  return out.join('\n');
}
