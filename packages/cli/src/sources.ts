import { spawnSync } from 'node:child_process';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  BackyError,
  isSourceDefinition,
  resolveSourcePaths,
  type SourceConfig,
  type SourceDefinition,
  sourceOptionsOf,
  validateSourceOptions,
} from '@backy/core';
import fileSource from '@backy/source-file';

/** Sources shipped with backy. Any other `type` is a package name or the path of a module. */
const BUILTIN: Readonly<Record<string, () => Promise<SourceDefinition<never>>>> = {
  file: async () => fileSource as SourceDefinition<never>,
  'ceph-rbd': async () => (await import('@backy/source-ceph-rbd')).default as SourceDefinition<never>,
  flyingcircus: async () => (await import('@backy/source-flyingcircus')).default as SourceDefinition<never>,
  nbd: async () => (await import('@backy/source-nbd')).default as SourceDefinition<never>,
  qcow2: async () => (await import('@backy/source-nbd/qcow2')).default as SourceDefinition<never>,
};

export const BUILTIN_SOURCES = Object.keys(BUILTIN);

/** A `type` that names a module file rather than a package: an absolute path or a file: URL. */
export function isSourcePath(type: string): boolean {
  return type.startsWith('file:') || isAbsolute(type) || type.startsWith('./') || type.startsWith('../');
}

/** `init` accepts a relative path and writes it absolute; configs must name absolute paths. */
export function absoluteSourceType(type: string, cwd: string): string {
  return type.startsWith('./') || type.startsWith('../') ? resolve(cwd, type) : type;
}

/**
 * Loads the source module for `type`: a built-in, else a package resolved from where backy itself is
 * installed (a globally installed backy finds globally installed plugins), else a module path. Each way
 * a plugin can fail to load is its own one-line error naming the module.
 */
export async function loadSourceDefinition(type: string): Promise<SourceDefinition<unknown>> {
  const builtin = BUILTIN[type];
  if (builtin) return (await builtin()) as SourceDefinition<unknown>;
  const path = isSourcePath(type);
  if (path && !type.startsWith('file:') && !isAbsolute(type)) {
    throw new BackyError(
      'SOURCE_UNKNOWN',
      `source type ${JSON.stringify(type)}: a module path in a config must be absolute (or a file: URL)`,
    );
  }
  const specifier = path && !type.startsWith('file:') ? pathToFileURL(type).href : type;
  const what = path ? `source module ${type}` : `source package ${JSON.stringify(type)}`;
  let mod: { default?: unknown };
  try {
    mod = await import(specifier);
  } catch (error) {
    throw describeLoadFailure(type, specifier, what, error);
  }
  const definition = mod.default;
  if (!isSourceDefinition(definition)) {
    throw new BackyError(
      'SOURCE_INVALID',
      `${what} does not export a source: its default export must be made with defineSource({ type, optionsSchema, create }) from @backy/core/source (${describeExport(mod)})`,
    );
  }
  if (!path && definition.type !== type) {
    throw new BackyError(
      'SOURCE_INVALID',
      `${what} implements source type ${JSON.stringify(definition.type)}, not ${JSON.stringify(type)}: a plugin's defineSource type must be its package name`,
    );
  }
  return definition as SourceDefinition<unknown>;
}

function describeExport(mod: { default?: unknown }): string {
  if (!('default' in mod) || mod.default === undefined) {
    const names = Object.keys(mod);
    return names.length > 0
      ? `it has no default export, only ${names.join(', ')}`
      : 'it has no default export';
  }
  const value = mod.default as Record<string, unknown> | null;
  if (value == null || typeof value !== 'object')
    return `its default export is ${value === null ? 'null' : typeof value}`;
  const missing = [
    typeof value.type !== 'string' ? 'type (a string)' : null,
    typeof value.create !== 'function' ? 'create (a function)' : null,
    value.optionsSchema == null ? 'optionsSchema' : null,
  ].filter((m) => m != null);
  return missing.length > 0
    ? `its default export lacks ${missing.join(', ')}`
    : 'its optionsSchema is not a Standard Schema (e.g. zod 3.24 or later)';
}

function describeLoadFailure(type: string, specifier: string, what: string, error: unknown): BackyError {
  const err = error as NodeJS.ErrnoException & { url?: string };
  const message = String(err?.message ?? error).split('\n')[0]!;
  if (err?.code === 'ERR_UNSUPPORTED_DIR_IMPORT') {
    return new BackyError('SOURCE_INVALID', `${what} is a directory: name the module's entry file`, {
      cause: error,
    });
  }
  if (err?.code === 'ERR_MODULE_NOT_FOUND') {
    // Node names what it could not find first: the plugin itself, a file of it, or something it imports.
    const missing = /^Cannot find (?:package|module) '([^']+)'/.exec(message)?.[1] ?? '';
    const from = / imported from (\S+)/.exec(message)?.[1];
    const pkg = packageName(type);
    if (specifier.startsWith('file:') && missing === fileURLToPath(specifier)) {
      return new BackyError('SOURCE_UNKNOWN', `${what}: no such file`, { cause: error });
    }
    if (!specifier.startsWith('file:') && (missing === pkg || missing.endsWith(`/node_modules/${pkg}`))) {
      return new BackyError(
        'SOURCE_UNKNOWN',
        `unknown source type ${JSON.stringify(type)}: not built in (${BUILTIN_SOURCES.join(', ')}) and no package of that name is installed beside backy (${installRoot()}); install it there (npm install -g for a global backy) or name the module by its absolute path`,
        { cause: error },
      );
    }
    if (!specifier.startsWith('file:') && missing.includes(`/node_modules/${pkg}/`)) {
      return new BackyError(
        'SOURCE_INVALID',
        `${what} is installed, but its file ${missing} is missing (is the package built?)`,
        { cause: error },
      );
    }
    return new BackyError(
      'SOURCE_INVALID',
      `${what} cannot load its dependency ${JSON.stringify(missing || message)}${from ? ` (imported from ${from})` : ''}: install the plugin with its dependencies`,
      { cause: error },
    );
  }
  if (err?.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED' || err?.code === 'ERR_INVALID_PACKAGE_CONFIG') {
    return new BackyError('SOURCE_INVALID', `${what} cannot be imported: ${message}`, { cause: error });
  }
  if (error instanceof SyntaxError) {
    const where = specifier.startsWith('file:') ? syntaxErrorLine(fileURLToPath(specifier)) : '';
    return new BackyError('SOURCE_INVALID', `${what} has a syntax error${where}: ${message}`, {
      cause: error,
    });
  }
  return new BackyError('SOURCE_INVALID', `${what} failed while loading: ${message}`, { cause: error });
}

/**
 * ` (FILE:LINE)` of a module's syntax error. Node 20 keeps the place out of the error an import throws;
 * `node --check` prints it first (only the module's own file, not what it imports).
 */
function syntaxErrorLine(file: string): string {
  const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10_000 });
  const at = /^(\/\S+):(\d+)$/m.exec(check.stderr ?? '');
  return at ? ` (${at[1]}:${at[2]})` : '';
}

/** The package part of a specifier: `@acme/x/sub` → `@acme/x`, `pkg/sub` → `pkg`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** Where package names are resolved from: the node_modules that holds backy's CLI. */
function installRoot(): string {
  const here = fileURLToPath(import.meta.url);
  const at = here.lastIndexOf('/node_modules/');
  return at >= 0 ? here.slice(0, at + '/node_modules'.length) : resolve(here, '../../..');
}

/**
 * Loads the source module and validates its options; errors name `source.<key>` in `where`. Relative
 * paths among them are relative to `archiveDir`, like every path in an archive config.
 */
export async function loadSource(config: SourceConfig, where: string, archiveDir: string) {
  const definition = await loadSourceDefinition(config.type);
  const raw = sourceOptionsOf(config);
  const options = await validateSourceOptions(definition.optionsSchema, raw, where, ['source']);
  return { definition, options: resolveSourcePaths(definition, options, archiveDir) };
}
