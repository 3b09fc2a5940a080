import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  Archive,
  assertSameChunkNames,
  BackyError,
  type CopyResult,
  copyRevisions,
  formatBytes,
  fromLegacyArchiveConfig,
  isBackyError,
} from '@backy/core';
import { type Command, JSON_OPTION, revisionOption } from '../command.js';
import { STORE_DRIVERS } from '../stores.js';
import { parseStoreOptions } from './init.js';

export const copyCommand: Command = {
  name: 'copy',
  summary: 'copy revisions to another archive (e.g. offsite), sending only the chunks it lacks',
  usage:
    "copy [-r SPEC] [--init-from-source [--store KEY=VALUE]...] [--json] TARGET   (SPEC default: all; TARGET: an archive directory, made with `backy -b TARGET init …` or by --init-from-source with the source's config and the given store)",
  options: {
    revision: revisionOption('the revisions to copy', 'all'),
    'init-from-source': {
      type: 'boolean',
      description: "make TARGET first when it is no archive yet, with the source's config",
    },
    store: {
      type: 'string',
      multiple: true,
      valueName: 'KEY=VALUE',
      description: "with --init-from-source: the new archive's store (default: its own chunks/ folder)",
    },
    json: JSON_OPTION,
  },
  positionals: [1, 1],
  completeArguments: 'dir',
  abortable: true,
  async run(ctx) {
    const source = await ctx.openArchive();
    const spec = String(ctx.values.revision);
    const revisions = await source.resolve(spec);
    if (revisions.length === 0) {
      throw new BackyError(
        'REVISION_NOT_FOUND',
        `copy: revision spec ${JSON.stringify(spec)} matches no revision of ${source.path}`,
      );
    }
    const storeOptions = (ctx.values.store as string[] | undefined) ?? [];
    const initFromSource = ctx.values['init-from-source'] === true;
    if (storeOptions.length > 0 && !initFromSource) {
      throw new BackyError(
        'USAGE',
        'copy: --store is for --init-from-source; an existing target keeps the store of its config',
      );
    }
    const target = await openTarget(resolve(ctx.positionals[0]!), source, {
      init: initFromSource,
      store: parseStoreOptions(storeOptions, 'copy'),
    });
    const results = await copyRevisions(source, target, revisions, {
      logger: ctx.logger(),
      signal: ctx.signal,
      onProgress: (p) => ctx.progress.update(p.phase, p.done, p.total),
    });
    ctx.progress.finish();
    if (ctx.values.json) {
      ctx.printJson({ target: target.path, revisions: results });
      return 0;
    }
    for (const result of results) ctx.print(describe(result));
    return 0;
  },
};

function describe(r: CopyResult): string {
  if (r.status === 'present') return `${r.uuid}: already in the target`;
  return `${r.uuid}: copied, ${r.chunksSent} chunk${r.chunksSent === 1 ? '' : 's'} sent (${formatBytes(r.bytesSent)}), ${r.chunksPresent} already there`;
}

/**
 * The target archive; with `init`, made first when it is not an archive yet: the source's config (source,
 * schedule, layout) with `store` (empty: the target's own `chunks/`). Errors name the target.
 */
async function openTarget(
  path: string,
  source: Archive,
  options: { init: boolean; store: Record<string, unknown> },
): Promise<Archive> {
  const named = (error: unknown) =>
    isBackyError(error) && !error.message.includes(path)
      ? new BackyError(error.code, `copy: target ${path}: ${error.message}`, { cause: error })
      : error;
  try {
    return await Archive.open(path, { stores: STORE_DRIVERS });
  } catch (error) {
    if (!isBackyError(error, 'ARCHIVE_NOT_FOUND')) throw named(error);
    if (!options.init) {
      throw new BackyError(
        'ARCHIVE_NOT_FOUND',
        `copy: the target ${path} is not a backy archive (no config file); create it with \`backy -b ${path} init …\` or pass --init-from-source`,
        { cause: error },
      );
    }
  }
  const configPath = Archive.configPath(source.path);
  // Imported here, not at the top: `backy --help` loads every command's module, and core has its own
  // (bundled) yaml.
  const { parse } = await import('yaml');
  const raw = fromLegacyArchiveConfig(parse(await readFile(configPath, 'utf8'))) as Record<string, unknown>;
  const { store: _sourceStore, ...config } = raw;
  try {
    // Checked before the target is written: a failed init leaves nothing, so a retry with other
    // --store options makes the target anew instead of meeting a half-made one.
    return await Archive.init(
      path,
      { ...config, ...(Object.keys(options.store).length > 0 ? { store: options.store } : {}) },
      { stores: STORE_DRIVERS, check: (target) => assertSameChunkNames(source, target) },
    );
  } catch (error) {
    throw named(error);
  }
}
