import type { ParseArgsConfig } from 'node:util';
import type { OptionSpecs } from './command.js';

/** The part of option definitions that node's parseArgs reads. */
export function parseArgsOptions(specs: OptionSpecs): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, spec] of Object.entries(specs)) {
    options[name] = {
      type: spec.type,
      ...(spec.short != null ? { short: spec.short } : {}),
      ...(spec.multiple === true ? { multiple: true } : {}),
      ...(spec.default != null ? { default: spec.default } : {}),
    };
  }
  return options;
}

/**
 * Node's parseArgs takes `-r -1` and `--wait -5` for an option followed by another option and fails
 * with "argument is ambiguous". A value that is a negative number is meant as the value: it is joined
 * to its option (`--revision=-1`), so the command's own check can say what is wrong with it.
 */
export function joinNegativeValues(args: readonly string[], options: ParseArgsConfig['options']): string[] {
  const takesValue = new Set<string>();
  for (const [name, option] of Object.entries(options ?? {})) {
    if (option.type !== 'string') continue;
    takesValue.add(`--${name}`);
    if (option.short != null) takesValue.add(`-${option.short}`);
  }
  const long = (flag: string) => {
    if (flag.startsWith('--')) return flag;
    const entry = Object.entries(options ?? {}).find(([, o]) => `-${o.short}` === flag);
    return `--${entry![0]}`;
  };
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      out.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    if (takesValue.has(arg) && next != null && /^-\d/.test(next)) {
      out.push(`${long(arg)}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/**
 * parseArgs' message in our words: its first sentence, without the hints that name its own syntax
 * (`-- "--human"`, `--revision=-XYZ`), which mean nothing to someone reading `backy --help`.
 */
export function describeParseError(error: unknown): string {
  const message = (error as Error).message ?? String(error);
  const ambiguous = /^Option '([^']+)' argument is ambiguous/.exec(message);
  if (ambiguous) return `option ${ambiguous[1]} needs a value`;
  const missing = /^Option '([^']+)' argument missing/.exec(message);
  if (missing) return `option ${missing[1]!.replace(/ <value>$/, '')} needs a value`;
  const unknown = /^Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown option ${unknown[1]}`;
  const unexpected = /^Unexpected argument '([^']+)'/.exec(message);
  if (unexpected) return `unexpected argument ${unexpected[1]}`;
  return message
    .split('\n')[0]!
    .replace(/\. To specify .*$/, '')
    .replace(/\.$/, '');
}

/**
 * The options parsed after the command name: the command's own, and the global ones, since flags go
 * anywhere (as restic's and proxmox-backup-client's do: `backy backup -q daily`). Where a command
 * defines a name or a letter a global option also has, the command's meaning wins after the command
 * name (`backy scheduler -l FILE` is the daemon's log) and the global one keeps what is left of it:
 * its long name when only the letter is taken, nothing when its long name is taken (then it is given
 * before the command). `globals` lists the keys of the parsed values that are global options.
 */
export function commandParseOptions(
  globalSpecs: OptionSpecs,
  commandSpecs: OptionSpecs,
): { options: NonNullable<ParseArgsConfig['options']>; globals: Set<string> } {
  const own = parseArgsOptions(commandSpecs);
  const letters = new Set(Object.values(commandSpecs).flatMap((o) => (o.short != null ? [o.short] : [])));
  const options: NonNullable<ParseArgsConfig['options']> = {};
  const globals = new Set<string>();
  for (const [name, option] of Object.entries(parseArgsOptions(globalSpecs))) {
    if (Object.hasOwn(commandSpecs, name)) continue;
    const { short, default: _default, ...rest } = option;
    options[name] = short != null && !letters.has(short) ? { ...rest, short } : rest;
    globals.add(name);
  }
  return { options: { ...options, ...own }, globals };
}
