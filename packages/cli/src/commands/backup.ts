import {
  Archive,
  BackyError,
  formatBytes,
  formatDuration,
  runBackup,
  unscheduledLegacyWarning,
} from '@backy/core';
import { type Command, JSON_OPTION } from '../command.js';
import { revisionJson } from '../json-keys.js';
import { loadSource } from '../sources.js';

export const backupCommand: Command = {
  name: 'backup',
  summary: 'make a new revision with the given tags',
  usage: 'backup [-f] [--json] [--fence TOKEN] TAGS   (comma-separated, e.g. daily,weekly)',
  options: {
    force: { type: 'boolean', short: 'f', description: 'accept tags that are not in the schedule' },
    json: JSON_OPTION,
    fence: {
      type: 'string',
      valueName: 'TOKEN',
      description:
        "fleet mode: commit only while the archive's fence holds this token (the scheduler passes it)",
    },
  },
  positionals: [1, 1],
  abortable: true,
  async run(ctx) {
    const fence = fenceToken(ctx.values.fence);
    const archive = await ctx.openArchive();
    const logger = ctx.logger();
    const unscheduled = await unscheduledLegacyWarning(archive);
    if (unscheduled != null) ctx.warn(unscheduled);
    const { definition, options } = await loadSource(
      archive.config.source,
      Archive.configPath(archive.path),
      archive.path,
    );
    const source = definition.create(options, { logger });
    const revision = await runBackup(archive, source, {
      sourceName: `source ${definition.describe?.(options) ?? archive.config.source.type}`,
      tags: ctx.positionals[0]!.split(','),
      force: ctx.values.force === true,
      logger,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress.update(p.phase, p.done, p.total),
      ...(fence != null ? { fenceToken: fence } : {}),
    });
    ctx.progress.finish();
    if (ctx.values.json) {
      ctx.printJson({ revision: revisionJson(revision) });
      return revision.trust === 'distrusted' ? 1 : 0;
    }
    const s = revision.stats;
    const note = revision.trust === 'distrusted' ? ' — VERIFICATION FAILED, revision distrusted' : '';
    ctx.print(
      `${revision.uuid} ${revision.tags.join(',')}: ${formatBytes(revision.size)} image, ${formatBytes(s.bytes_written)} written, ${s.chunks_written} new / ${s.chunks_reused} reused / ${s.chunks_zero} zero chunks in ${formatDuration(s.duration)}${note}`,
    );
    return revision.trust === 'distrusted' ? 1 : 0;
  },
};

/** `--fence TOKEN`: a positive integer (a Consul index), or none. */
function fenceToken(value: unknown): number | undefined {
  if (value == null) return undefined;
  const token = Number(value);
  if (typeof value !== 'string' || !/^[1-9][0-9]*$/.test(value) || !Number.isSafeInteger(token))
    throw new BackyError('USAGE', `--fence: expected a positive integer, got ${JSON.stringify(value)}`);
  return token;
}
