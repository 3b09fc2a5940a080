import { type Command, commandOptions, type OptionSpec, type OptionSpecs } from './command.js';
import { GLOBAL_OPTIONS } from './global-options.js';
import { CENTRAL_CONFIG_NOTE, REFERENCE_SECTIONS, type ReferenceSection } from './reference.js';

/** `-r, --revision SPEC`: how an option is written, with its value's name. */
export function optionSynopsis(name: string, spec: OptionSpec): string {
  const value = spec.type === 'string' ? ` ${spec.valueName ?? 'VALUE'}` : '';
  return `${spec.short != null ? `-${spec.short}, ` : ''}--${name}${value}`;
}

/** The description with what applies when the option is absent, and whether it repeats. */
export function optionDescription(spec: OptionSpec): string {
  const notes: string[] = [];
  const fallback = spec.defaultText ?? spec.default;
  if (fallback != null) notes.push(`default: ${fallback}`);
  if (spec.multiple === true) notes.push('repeatable');
  return notes.length > 0 ? `${spec.description} (${notes.join('; ')})` : spec.description;
}

function table(rows: readonly [string, string][], indent = '  '): string[] {
  const width = Math.min(28, Math.max(...rows.map(([a]) => a.length)));
  return rows.map(([a, b]) =>
    a.length > width
      ? `${indent}${a}\n${indent}${' '.repeat(width)}  ${b}`
      : `${indent}${a.padEnd(width)}  ${b}`,
  );
}

function optionRows(options: OptionSpecs): [string, string][] {
  return Object.entries(options).map(([name, o]) => [optionSynopsis(name, o), optionDescription(o)]);
}

function sectionText(section: ReferenceSection): string {
  const rows = section.entries.map((e): [string, string] => [e.term, e.meaning]);
  const notes = section.notes ?? [];
  return [`${section.title}:`, ...table(rows), ...(notes.length > 0 ? ['', ...notes] : [])].join('\n');
}

/** Extra pages of `backy help TOPIC`: revision specs, exit statuses, environment variables. */
export const HELP_TOPICS: Record<string, { text: () => string }> = Object.fromEntries(
  REFERENCE_SECTIONS.map((section) => [section.topic, { text: () => sectionText(section) }]),
);

export function globalHelp(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'usage: backy [-v|-q] [-l FILE] [-b DIR] COMMAND [ARGS]',
    '',
    'Block-based backup and restore of VM disk images.',
    '',
    'options (before or after the command):',
    ...table(optionRows(GLOBAL_OPTIONS)),
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    ...REFERENCE_SECTIONS.flatMap((section) => [sectionText(section), '']),
    CENTRAL_CONFIG_NOTE,
    `More: \`backy help COMMAND\`, \`backy help ${Object.keys(HELP_TOPICS).join('|')}\`, man backy.`,
  ].join('\n');
}

export function commandHelp(c: Command): string {
  return [
    `usage: backy ${c.usage}`,
    '',
    c.summary,
    '',
    'options:',
    ...table(optionRows(commandOptions(c))),
    '',
    "Global options (-b DIR, -l FILE, -v, -q) go before or after the command; after it, an option this command also defines (same name or letter) is the command's. See `backy --help`.",
  ].join('\n');
}
