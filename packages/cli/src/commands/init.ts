import { Archive, BackyError, isConfigLayoutName, validateSourceOptions } from '@backy/core';
import { type Command, JSON_OPTION } from '../command.js';
import { absoluteModuleType } from '../plugins.js';
import { loadSourceDefinition } from '../sources.js';
import { STORE_DRIVERS } from '../stores.js';

/** The schedule `init` writes; edit the config to change it. */
export const DEFAULT_SCHEDULE = {
  daily: { interval: '1d', keep: 9 },
  weekly: { interval: '7d', keep: 5 },
  monthly: { interval: '30d', keep: 4 },
};

/**
 * `-o KEY=VALUE` options: KEY may be dotted for nested options (`-o consul.token=…`); VALUE is read as
 * JSON when it is valid JSON (`true`, `42`, `["a","b"]`), else taken as a string (`rbd`, `007`); a
 * string that looks like JSON is quoted: `-o 'name="123"'`.
 */
export function parseSourceOptions(
  pairs: readonly string[],
  flag: '-o' | '--store' = '-o',
  /** The command the messages name. */
  command = 'init',
): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  const example = flag === '-o' ? '-o pool=rbd' : '--store type=s3';
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq) : '';
    if (key === '' || key.split('.').some((part) => part === '')) {
      throw new BackyError(
        'USAGE',
        `${command}: ${flag} ${JSON.stringify(pair)}: expected KEY=VALUE, e.g. ${example}`,
      );
    }
    if (key.split('.').some((part) => UNSAFE_KEYS.has(part)))
      throw new BackyError('USAGE', `${command}: ${flag} ${key}: not an option name`);
    if (key === 'type' && flag === '-o')
      throw new BackyError('USAGE', 'init: -o type: the source type is the TYPE argument, not an option');
    const raw = pair.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // not JSON: a plain string
    }
    const parts = key.split('.');
    let node = options;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (next != null && !isPlainObject(next))
        throw new BackyError('USAGE', `${command}: ${flag} ${key}: ${part} is already set to a value`);
      if (next == null) node[part] = {};
      node = node[part] as Record<string, unknown>;
    }
    const last = parts.at(-1)!;
    if (isPlainObject(node[last]))
      throw new BackyError('USAGE', `${command}: ${flag} ${key}: ${key} already has options of its own`);
    node[last] = value;
  }
  return options;
}

/** `--store KEY=VALUE` options; a store module named by a relative path (`type=./driver.mjs`) is written absolute. */
export function parseStoreOptions(pairs: readonly string[], command: string): Record<string, unknown> {
  const store = parseSourceOptions(pairs, '--store', command);
  if (typeof store.type === 'string') store.type = absoluteModuleType(store.type, process.cwd());
  return store;
}

const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value != null && !Array.isArray(value);
}

/** `over` merged into `base`, nested objects key by key (`-o consul.token=…` keeps `consul.url`). */
function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = merged[key];
    merged[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return merged;
}

function withoutType(options: Record<string, unknown>): Record<string, unknown> {
  const { type: _type, ...rest } = options;
  return rest;
}

export const initCommand: Command = {
  name: 'init',
  summary: 'create an archive for a source in the base directory',
  usage:
    'init [--layout chunked|images] [-o KEY=VALUE]... [--store KEY=VALUE]... [--attach] [--json] TYPE [SOURCE]   e.g. `backy -b /srv/backy/vm1 init file /srv/vm/disk.img`; `--store type=s3 --store endpoint=URL --store bucket=NAME --store prefix=vm1/` keeps the archive in object storage; `init --attach` alone makes a directory holding only a copied config the archive its store holds',
  options: {
    layout: {
      type: 'string',
      valueName: 'LAYOUT',
      description: 'chunked (a chunk store) or images (an image file per revision, as backy 2.x)',
      defaultText: 'chunked',
      complete: ['chunked', 'images'],
    },
    option: {
      type: 'string',
      short: 'o',
      multiple: true,
      valueName: 'KEY=VALUE',
      description: 'a source option (KEY may be dotted; VALUE is read as JSON when it is JSON)',
    },
    store: {
      type: 'string',
      multiple: true,
      valueName: 'KEY=VALUE',
      description:
        'a store option, e.g. type=s3, or type=PACKAGE or type=./driver.mjs for a third-party store (default: the chunks/ folder of the archive)',
    },
    attach: {
      type: 'boolean',
      description:
        'make this directory the archive whose history the store holds already (a new host); without it, init refuses such a store',
    },
    json: JSON_OPTION,
  },
  positionals: [0, 2],
  async run(ctx) {
    const attach = ctx.values.attach === true;
    if (ctx.positionals.length === 0) {
      if (!attach)
        throw new BackyError('USAGE', `init: wrong number of arguments; usage: backy ${initCommand.usage}`);
      // A directory with a config copied from another host: it takes the store's archive ID.
      const archive = await Archive.attach(ctx.global.baseDir, { stores: STORE_DRIVERS });
      const count = (await archive.revisions()).length;
      ctx.print(
        `Attached ${archive.path} to the archive in ${archive.store.root} (${count} revision${count === 1 ? '' : 's'})`,
      );
      return 0;
    }
    const [given, argument] = ctx.positionals as [string, string | undefined];
    const type = absoluteModuleType(given, process.cwd());
    const layout = ctx.values.layout;
    if (layout != null && !isConfigLayoutName(String(layout))) {
      throw new BackyError(
        'USAGE',
        `init: --layout must be chunked or images, not ${JSON.stringify(layout)}`,
      );
    }
    const extra = parseSourceOptions((ctx.values.option as string[] | undefined) ?? []);
    const definition = await loadSourceDefinition(type);
    if (argument != null && definition.parseInitArgument == null) {
      throw new BackyError(
        'USAGE',
        `init: source type ${type} takes no SOURCE argument; give its options with -o KEY=VALUE or write ${Archive.configPath(ctx.global.baseDir)} by hand`,
      );
    }
    const options = deepMerge(argument != null ? definition.parseInitArgument!(argument) : {}, extra);
    const parsed = await validateSourceOptions(
      definition.optionsSchema,
      options,
      `init ${[given, argument].filter((a) => a != null).join(' ')}`,
    ).catch((error: unknown) => {
      throw new BackyError('USAGE', (error as Error).message, { cause: error });
    });
    const store = parseStoreOptions((ctx.values.store as string[] | undefined) ?? [], 'init');
    const archive = await Archive.init(
      ctx.global.baseDir,
      {
        source: { type, ...withoutType(options) },
        schedule: DEFAULT_SCHEDULE,
        ...(layout != null ? { layout } : {}),
        ...(Object.keys(store).length > 0 ? { store } : {}),
      },
      { stores: STORE_DRIVERS, attach },
    );
    for (const warning of await archive.layoutWarnings()) ctx.warn(warning);
    for (const warning of (await definition.checkInit?.(parsed)) ?? []) ctx.warn(warning);
    // Described by the source, not echoed: the argument may carry a secret (a Consul token).
    const what = definition.describe?.(parsed) ?? argument ?? '';
    if (ctx.values.json) {
      ctx.printJson({
        archive: archive.path,
        sourceType: type,
        source: what || null,
        layout: archive.config.layout,
      });
      return 0;
    }
    ctx.print(`Initialized archive ${archive.path} for ${type} source ${what}`.trimEnd());
    return 0;
  },
};
