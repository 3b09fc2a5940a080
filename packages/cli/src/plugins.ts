import { spawnSync } from 'node:child_process';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BackyError, type BackyErrorCode } from '@backy/core';

/** A family of plugins (sources, store drivers): what it is called, how it is made, which are built in. */
export interface PluginKind<T extends { readonly type: string }> {
  /** What messages call it: `source`, `store`. */
  noun: string;
  /** What a module's default export must be, for messages: `a source`. */
  thing: string;
  /** The helper that makes one and where it comes from: `defineSource`, `@backy/core/source`. */
  define: string;
  entry: string;
  /** The member besides `type` and `optionsSchema` that a plugin must have (a function). */
  method: string;
  /** Error codes: the plugin cannot be found; it is found but does not load or has the wrong shape. */
  unknown: BackyErrorCode;
  invalid: BackyErrorCode;
  /** The plugins shipped with backy, loaded when used; any other `type` is a package or a module path. */
  builtins: Readonly<Record<string, () => Promise<T>>>;
  /** The shape check of a module's default export. */
  is(value: unknown): value is T;
}

type AnyKind = PluginKind<{ readonly type: string }>;

/** A `type` that names a module file rather than a package: an absolute path or a file: URL. */
export function isModulePath(type: string): boolean {
  return type.startsWith('file:') || isAbsolute(type) || type.startsWith('./') || type.startsWith('../');
}

/** `init` accepts a relative path and writes it absolute; configs must name absolute paths. */
export function absoluteModuleType(type: string, cwd: string): string {
  return type.startsWith('./') || type.startsWith('../') ? resolve(cwd, type) : type;
}

/**
 * Loads the plugin module for `type`: a built-in, else a package resolved from where backy itself is
 * installed (a globally installed backy finds globally installed plugins), else a module path. Each way
 * a plugin can fail to load is its own one-line error naming the module.
 */
export async function loadPlugin<T extends { readonly type: string }>(
  kind: PluginKind<T>,
  type: string,
): Promise<T> {
  const builtin = Object.hasOwn(kind.builtins, type) ? kind.builtins[type] : undefined;
  if (builtin) return builtin();
  const path = isModulePath(type);
  if (path && !type.startsWith('file:') && !isAbsolute(type)) {
    throw new BackyError(
      kind.unknown,
      `${kind.noun} type ${JSON.stringify(type)}: a module path in a config must be absolute (or a file: URL)`,
    );
  }
  const specifier = path && !type.startsWith('file:') ? pathToFileURL(type).href : type;
  const what = path ? `${kind.noun} module ${type}` : `${kind.noun} package ${JSON.stringify(type)}`;
  let mod: { default?: unknown };
  try {
    mod = await import(specifier);
  } catch (error) {
    throw describeLoadFailure(kind, type, specifier, what, error);
  }
  const plugin = mod.default;
  if (!kind.is(plugin)) {
    throw new BackyError(
      kind.invalid,
      `${what} does not export ${kind.thing}: its default export must be made with ${kind.define}({ type, optionsSchema, ${kind.method} }) from ${kind.entry} (${describeExport(kind, mod)})`,
    );
  }
  if (!path && plugin.type !== type) {
    throw new BackyError(
      kind.invalid,
      `${what} implements ${kind.noun} type ${JSON.stringify(plugin.type)}, not ${JSON.stringify(type)}: a plugin's ${kind.define} type must be its package name`,
    );
  }
  return plugin;
}

function describeExport(kind: AnyKind, mod: { default?: unknown }): string {
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
    typeof value[kind.method] !== 'function' ? `${kind.method} (a function)` : null,
    value.optionsSchema == null ? 'optionsSchema' : null,
  ].filter((m) => m != null);
  return missing.length > 0
    ? `its default export lacks ${missing.join(', ')}`
    : 'its optionsSchema is not a Standard Schema (e.g. zod 3.24 or later)';
}

function describeLoadFailure(
  kind: AnyKind,
  type: string,
  specifier: string,
  what: string,
  error: unknown,
): BackyError {
  const err = error as NodeJS.ErrnoException & { url?: string };
  const message = String(err?.message ?? error).split('\n')[0]!;
  if (err?.code === 'ERR_UNSUPPORTED_DIR_IMPORT') {
    return new BackyError(kind.invalid, `${what} is a directory: name the module's entry file`, {
      cause: error,
    });
  }
  if (err?.code === 'ERR_MODULE_NOT_FOUND') {
    // Node names what it could not find first: the plugin itself, a file of it, or something it imports.
    const missing = /^Cannot find (?:package|module) '([^']+)'/.exec(message)?.[1] ?? '';
    const from = / imported from (\S+)/.exec(message)?.[1];
    const pkg = packageName(type);
    if (specifier.startsWith('file:') && missing === fileURLToPath(specifier)) {
      return new BackyError(kind.unknown, `${what}: no such file`, { cause: error });
    }
    if (!specifier.startsWith('file:') && (missing === pkg || missing.endsWith(`/node_modules/${pkg}`))) {
      return new BackyError(
        kind.unknown,
        `unknown ${kind.noun} type ${JSON.stringify(type)}: not built in (${Object.keys(kind.builtins).join(', ')}) and no package of that name is installed beside backy (${installRoot()}); install it there (npm install -g for a global backy) or name the module by its absolute path`,
        { cause: error },
      );
    }
    if (!specifier.startsWith('file:') && missing.includes(`/node_modules/${pkg}/`)) {
      return new BackyError(
        kind.invalid,
        `${what} is installed, but its file ${missing} is missing (is the package built?)`,
        { cause: error },
      );
    }
    return new BackyError(
      kind.invalid,
      `${what} cannot load its dependency ${JSON.stringify(missing || message)}${from ? ` (imported from ${from})` : ''}: install the plugin with its dependencies`,
      { cause: error },
    );
  }
  if (err?.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED' || err?.code === 'ERR_INVALID_PACKAGE_CONFIG') {
    return new BackyError(kind.invalid, `${what} cannot be imported: ${message}`, { cause: error });
  }
  if (error instanceof SyntaxError) {
    const where = specifier.startsWith('file:') ? syntaxErrorLine(fileURLToPath(specifier)) : '';
    return new BackyError(kind.invalid, `${what} has a syntax error${where}: ${message}`, {
      cause: error,
    });
  }
  return new BackyError(kind.invalid, `${what} failed while loading: ${message}`, { cause: error });
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
