import {
  Archive,
  BackyError,
  formatBytes,
  formatDuration,
  isRevisionId,
  parseDuration,
  runBackup,
  unscheduledLegacyWarning,
} from '@backy/core';
import { type Command, JSON_OPTION } from '../command.js';
import { revisionJson } from '../json-keys.js';
import { loadSource } from '../sources.js';

export const backupCommand: Command = {
  name: 'backup',
  summary: 'make a new revision with the given tags',
  usage:
    'backup [-f] [--json] [--fence TOKEN] [--if-newest REV|none] [--attach] [--retain-until DATE|DURATION] TAGS   (comma-separated, e.g. daily,weekly)',
  options: {
    force: { type: 'boolean', short: 'f', description: 'accept tags that are not in the schedule' },
    json: JSON_OPTION,
    fence: {
      type: 'string',
      valueName: 'TOKEN',
      description:
        "fleet mode: commit only while the archive's fence holds this token (the scheduler passes it)",
    },
    'if-newest': {
      type: 'string',
      valueName: 'REV|none',
      description:
        "back up only if the archive's newest revision (read from the store under its writer lease) is still REV, or it has none; else exit 75 and do nothing (fleet mode: the scheduler passes it)",
    },
    attach: {
      type: 'boolean',
      description:
        'a directory without an archive ID whose remote store holds an archive becomes that archive first, as `init --attach` (fleet mode)',
    },
    'retain-until': {
      type: 'string',
      valueName: 'DATE|DURATION',
      description:
        "with store.object-lock: retain the revision at least until DATE (ISO, e.g. 2027-06-30) or for DURATION from now (40d, 12w); its tags' retention still applies if longer",
    },
  },
  positionals: [1, 1],
  abortable: true,
  async run(ctx) {
    const fence = fenceToken(ctx.values.fence);
    const retainUntil = retainUntilOption(ctx.values['retain-until'], Date.now());
    const ifNewest = ifNewestOption(ctx.values['if-newest']);
    const archive = await ctx.openArchive({ attach: ctx.values.attach === true });
    if (retainUntil != null && archive.store.objectLock == null)
      throw new BackyError(
        'USAGE',
        `--retain-until: the store of ${archive.path} has no Object Lock (store.object-lock)`,
      );
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
      ...(ifNewest != null ? { ifNewest } : {}),
      ...(retainUntil != null ? { retainUntil } : {}),
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

/** `--if-newest REV|none`: a revision ID as written (not a spec: no `last`, no tags), or none. */
function ifNewestOption(value: unknown): string | undefined {
  if (value == null) return undefined;
  const text = String(value);
  if (text === 'none' || isRevisionId(text)) return text;
  throw new BackyError('USAGE', `--if-newest: expected a revision ID or none, got ${JSON.stringify(text)}`);
}

/** `--fence TOKEN`: a positive integer (a Consul index), or none. */
function fenceToken(value: unknown): number | undefined {
  if (value == null) return undefined;
  const token = Number(value);
  if (typeof value !== 'string' || !/^[1-9][0-9]*$/.test(value) || !Number.isSafeInteger(token))
    throw new BackyError('USAGE', `--fence: expected a positive integer, got ${JSON.stringify(value)}`);
  return token;
}

/** `--retain-until`: an ISO date or time, or a duration from `now` (ms); none: undefined. */
function retainUntilOption(value: unknown, now: number): number | undefined {
  if (value == null) return undefined;
  const text = String(value).trim();
  const seconds = parseDuration(text);
  const at = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  // A bare number is a duration in seconds, as everywhere else.
  const until = seconds != null ? now + seconds * 1000 : at;
  if (!Number.isFinite(until))
    throw new BackyError(
      'USAGE',
      `--retain-until: invalid date or duration ${JSON.stringify(value)} (use e.g. 2027-06-30, 2027-06-30T12:00:00Z, 40d or 12w)`,
    );
  if (until <= now) throw new BackyError('USAGE', `--retain-until: ${text} is in the past`);
  return until;
}
