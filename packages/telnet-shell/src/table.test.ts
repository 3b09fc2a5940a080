import Table from 'cli-table3';
import { describe, expect, it } from 'vitest';
import { JOB_COLUMNS } from './shell.js';
import { type Align, renderTable } from './table.js';

function cliTable3(head: string[], rows: string[][], aligns: Align[]): string {
  const table = new Table({ head, style: { head: [], border: [], compact: true }, colAligns: aligns });
  for (const row of rows) table.push(row);
  return table.toString();
}

describe('renderTable', () => {
  it('draws exactly what cli-table3 draws for a compact table', () => {
    const head = ['Job', 'SLA overdue', 'Status', 'Last Dur'];
    const aligns: Align[] = ['left', 'right', 'left', 'right'];
    const cases: string[][][] = [
      [],
      [['a', '-', 'waiting', '1s']],
      [
        ['web01.example.com', '2h05m', 'failed', '-'],
        ['x', '-', 'running', '3d04h'],
        ['y', '1234567890123456', 'finishing', '123456789012'],
        ['', '', '', ''],
      ],
    ];
    for (const rows of cases) expect(renderTable(head, rows, aligns)).toBe(cliTable3(head, rows, aligns));
  });

  it('is fast for thousands of rows', () => {
    const rows = Array.from({ length: 5000 }, (_, i) => [
      `vm${i}`,
      '-',
      'waiting',
      '2026-01-01 00:00:00',
      'daily',
      '12s',
      '-',
      '-',
      '-',
    ]);
    // Speed is measured by `pnpm bench:scheduler` (tools/bench), not asserted here.
    const text = renderTable(JOB_COLUMNS, rows);
    expect(text.split('\n')).toHaveLength(5004);
  });
});
