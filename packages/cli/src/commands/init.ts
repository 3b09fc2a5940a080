import { Archive, BackyError } from '@backy/core';
import type { Command } from '../command.js';
import { loadSourceDefinition } from '../sources.js';

/** The schedule `init` writes; edit the config to change it. */
export const DEFAULT_SCHEDULE = {
  daily: { interval: '1d', keep: 9 },
  weekly: { interval: '7d', keep: 5 },
  monthly: { interval: '30d', keep: 4 },
};

export const initCommand: Command = {
  name: 'init',
  summary: 'create an archive for a source in the base directory',
  usage:
    'init [--layout chunked|images] TYPE SOURCE   e.g. `backy -b /srv/backy/vm1 init file /srv/vm/disk.img`',
  options: { layout: { type: 'string' } },
  positionals: [2, 2],
  async run(ctx) {
    const [type, argument] = ctx.positionals as [string, string];
    const definition = await loadSourceDefinition(type);
    if (definition.parseInitArgument == null) {
      throw new BackyError(
        'USAGE',
        `source type ${type} cannot be set up with init; write ${Archive.configPath(ctx.global.baseDir)} by hand`,
      );
    }
    const source = { type, ...definition.parseInitArgument(argument) };
    const { type: _t, ...options } = source;
    const parsed = definition.optionsSchema.safeParse(options);
    if (!parsed.success)
      throw new BackyError(
        'USAGE',
        `init ${type} ${argument}: ${parsed.error.issues[0]?.message ?? 'invalid source'}`,
      );
    const layout = ctx.values.layout;
    if (layout != null && layout !== 'chunked' && layout !== 'images') {
      throw new BackyError(
        'USAGE',
        `init: --layout must be chunked or images, not ${JSON.stringify(layout)}`,
      );
    }
    const archive = await Archive.init(ctx.global.baseDir, {
      source,
      schedule: DEFAULT_SCHEDULE,
      ...(layout != null ? { layout } : {}),
    });
    for (const warning of await archive.layoutWarnings())
      process.stderr.write(`warning: ${warning}
`);
    for (const warning of (await definition.checkInit?.(parsed.data)) ?? [])
      process.stderr.write(`warning: ${warning}\n`);
    // Described by the source, not echoed: the argument may carry a secret (a Consul token).
    const what = definition.describe?.(parsed.data) ?? argument;
    ctx.print(`Initialized archive ${archive.path} for ${type} source ${what}`);
    return 0;
  },
};
