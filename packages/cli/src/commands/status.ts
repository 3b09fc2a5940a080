import {
  Archive,
  BackyError,
  failedOwnVerification,
  formatBytes,
  heldBytes,
  isProtected,
  isRetained,
  layoutOf,
  type Revision,
  unscheduledLegacyWarning,
} from '@backy/core';
import Table from 'cli-table3';
import { type Command, JSON_OPTION, revisionOption } from '../command.js';
import { revisionJson } from '../json-keys.js';

export function formatDate(iso: string): string {
  return new Date(iso)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '');
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'list the revisions of the archive',
  usage: 'status [-r SPEC] [--json|--yaml]',
  options: {
    revision: { ...revisionOption('the revisions to list'), defaultText: 'all complete revisions' },
    json: JSON_OPTION,
    yaml: { type: 'boolean', description: 'print the revisions as YAML' },
  },
  positionals: [0, 0],
  async run(ctx) {
    if (ctx.values.json && ctx.values.yaml)
      throw new BackyError('USAGE', 'status: --json and --yaml exclude each other; give one of them');
    // The revisions are mirrored in the archive directory: with the store down, they are still shown.
    const archive = await ctx.openArchive({ offline: true });
    const scan = await archive.scan();
    const spec = ctx.values.revision as string | undefined;
    const revisions = spec == null ? scan.complete : await archive.resolve(spec);
    // Damaged `.rev` files and unknown files: one warning line each (stderr), in every output format.
    for (const line of Archive.describeScan(scan)) ctx.warn(line);
    const unscheduled = await unscheduledLegacyWarning(archive, scan.complete);
    if (unscheduled != null) ctx.warn(unscheduled);
    if (ctx.values.json) {
      ctx.printJson({ revisions: revisions.map(revisionJson) });
      return 0;
    }
    if (ctx.values.yaml) {
      // yaml (~70 CommonJS files) only for this output: the table and --json do without it.
      const { stringify } = await import('yaml');
      ctx.stdout.write(stringify(revisions));
      return 0;
    }
    ctx.print(renderStatus(revisions, await heldBytes(archive, revisions)));
    return 0;
  },
};

/** Sizes as backy 2.x's status printed them: two decimals, binary units (`60.00 GiB`, `511.99 kiB`). */
export const formatStatusBytes = (bytes: number): string => formatBytes(bytes, 'backy2');

/** Durations as backy 2.x printed them: seconds with one decimal (`845.0 s`). */
export function formatStatusDuration(seconds: number): string {
  return Number.isFinite(seconds) ? `${seconds.toFixed(1)} s` : '-';
}

/** What an operator should know about a revision beyond its trust. */
export function revisionNotes(rev: Revision): string[] {
  const notes: string[] = [];
  if (isProtected(rev)) notes.push('protected');
  if (isRetained(rev)) notes.push(`retained by Object Lock until ${formatDate(rev.retention!.until)}`);
  if (failedOwnVerification(rev)) notes.push('failed its own verification');
  const v = rev.verification;
  if (v?.mode != null && v.mode !== 'full')
    notes.push(`verified ${v.mode}: ${v.chunks_checked} of ${v.chunks_total} chunks`);
  if (rev.source_info?.snapshot_method === 'direct') notes.push('crash-consistent snapshot (no fs freeze)');
  const change = rev.source_info?.size_changed as { from?: unknown } | undefined;
  if (typeof change?.from === 'number')
    notes.push(
      `SOURCE SIZE CHANGED: ${formatStatusBytes(change.from)} before, ${formatStatusBytes(rev.size)} now`,
    );
  if (layoutOf(rev).imageFile && layoutOf(rev).legacy) notes.push('backy 2.x');
  return notes;
}

/**
 * The revision table: one row each, no separator lines between rows, sizes right-aligned (as backy
 * 2.x's status looked), a Notes column only when some revision has a note.
 */
export function renderStatus(revisions: Revision[], held: number): string {
  const notes = revisions.map(revisionNotes);
  const withNotes = notes.some((n) => n.length > 0);
  const table = new Table({
    head: ['Date (UTC)', 'ID', 'Size', 'Duration', 'Tags', 'Trust', ...(withNotes ? ['Notes'] : [])],
    colAligns: ['left', 'left', 'right', 'right', 'left', 'left', 'left'],
    style: { head: [], border: [] },
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
  });
  revisions.forEach((rev, i) => {
    table.push([
      formatDate(rev.timestamp),
      rev.uuid,
      formatStatusBytes(rev.stats.bytes_written),
      formatStatusDuration(rev.stats.duration),
      rev.tags.join(','),
      rev.trust,
      ...(withNotes ? [notes[i]!.join('; ')] : []),
    ]);
  });
  return `${table.toString()}\n${revisions.length} revision${revisions.length === 1 ? '' : 's'} containing ${formatBytes(held)} data (estimated)`;
}
