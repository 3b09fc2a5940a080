import { Archive, formatBytes, formatDuration, type Revision } from '@backy/core';
import Table from 'cli-table3';
import { stringify } from 'yaml';
import type { Command } from '../command.js';

export function formatDate(iso: string): string {
  return new Date(iso)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '');
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'list the revisions of the archive',
  usage: 'status [--json|--yaml]',
  options: { json: { type: 'boolean' }, yaml: { type: 'boolean' } },
  positionals: [0, 0],
  async run(ctx) {
    const archive = await ctx.openArchive();
    const scan = await archive.scan();
    const revisions = scan.complete;
    // Damaged `.rev` files and unknown files: one warning line each (stderr), in every output format.
    for (const line of Archive.describeScan(scan)) ctx.warn(line);
    if (ctx.values.json) {
      ctx.print(JSON.stringify(revisions, null, 2));
      return 0;
    }
    if (ctx.values.yaml) {
      ctx.stdout.write(stringify(revisions));
      return 0;
    }
    ctx.print(renderStatus(revisions));
    return 0;
  },
};

export function renderStatus(revisions: Revision[]): string {
  const table = new Table({
    head: ['Date (UTC)', 'ID', 'Size', 'Duration', 'Tags', 'Trust'],
    style: { head: [], border: [] },
  });
  let total = 0;
  for (const rev of revisions) {
    total += rev.stats.bytes_written;
    table.push([
      formatDate(rev.timestamp),
      rev.uuid,
      formatBytes(rev.stats.bytes_written),
      formatDuration(rev.stats.duration),
      rev.tags.join(','),
      rev.trust,
    ]);
  }
  return `${table.toString()}\n${revisions.length} revision${revisions.length === 1 ? '' : 's'} containing ${formatBytes(total)} data (estimated)`;
}
