import { type Command, commandOptions, type OptionSpec, type OptionSpecs } from './command.js';
import { GLOBAL_OPTIONS } from './global-options.js';
import { optionDescription } from './help.js';
import { CENTRAL_CONFIG_NOTE, REFERENCE_SECTIONS, type ReferenceEntry } from './reference.js';
import { cliVersion } from './version.js';

/** Text for roff: backslashes and hyphens escaped, no line that a control character would start. */
export function roff(text: string): string {
  return (
    text
      .replace(/\\/g, '\\e')
      .replace(/-/g, '\\-')
      .replace(/`([^`]+)`/g, '\\fB$1\\fR')
      // groff reads Latin-1 unless told otherwise: anything beyond ASCII as a named Unicode escape.
      .replace(
        /[^\p{ASCII}]/gu,
        (c) => `\\[u${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}]`,
      )
      .split('\n')
      .map((line) => (/^[.']/.test(line) ? `\\&${line}` : line))
      .join('\n')
  );
}

function optionItem(name: string, o: OptionSpec): string[] {
  const names = [...(o.short != null ? [`\\fB\\-${roff(o.short)}\\fR`] : []), `\\fB\\-\\-${roff(name)}\\fR`];
  const value = o.type === 'string' ? ` \\fI${roff(o.valueName ?? 'VALUE')}\\fR` : '';
  return ['.TP', `${names.join(', ')}${value}`, roff(optionDescription(o))];
}

const optionItems = (options: OptionSpecs): string[] =>
  Object.entries(options).flatMap(([name, o]) => optionItem(name, o));

const entryItems = (list: readonly ReferenceEntry[]): string[] =>
  list.flatMap((e) => ['.TP', `\\fB${roff(e.term)}\\fR`, roff(e.meaning)]);

/** The backy(1) man page (roff), from the same definitions as `--help`. */
export function manPage(commands: readonly Command[]): string {
  const lines = [
    '.\\" Generated from backy\'s command definitions (`backy completion man`); do not edit.',
    `.TH BACKY 1 "" "backy ${roff(cliVersion())}" "User Commands"`,
    '.SH NAME',
    'backy \\- block\\-based backup and restore of VM disk images',
    '.SH SYNOPSIS',
    '.B backy',
    '[\\fB\\-v\\fR|\\fB\\-q\\fR] [\\fB\\-l\\fR \\fIFILE\\fR] [\\fB\\-b\\fR \\fIDIR\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]',
    '.SH DESCRIPTION',
    roff(
      'backy keeps revisions of VM disk images (files, Ceph RBD images) in an archive directory: each backup reads the source, stores its chunks once (deduplicated, compressed) and records a revision; restore writes a revision back. The archive directory is -b DIR, else $BACKY_DIR, else the current directory.',
    ),
    '.PP',
    roff(CENTRAL_CONFIG_NOTE),
    '.SH OPTIONS',
    roff('Global options go before the command.'),
    ...optionItems(GLOBAL_OPTIONS),
    '.SH COMMANDS',
  ];
  for (const c of commands) {
    lines.push(`.SS ${roff(c.name)}`, `\\fBbacky ${roff(c.usage)}\\fR`, '.PP', roff(c.summary));
    lines.push(...optionItems(commandOptions(c)));
  }
  lines.push(
    ...REFERENCE_SECTIONS.flatMap((section) => [
      `.SH ${section.heading}`,
      ...entryItems(section.entries),
      ...(section.notes ?? []).flatMap((note) => ['.PP', roff(note)]),
    ]),
    '.SH FILES',
    ...entryItems([
      { term: 'DIR/config', meaning: 'the archive: its source, schedule and store (YAML)' },
      { term: 'DIR/backy.log', meaning: 'the log of every command run on the archive (JSON lines)' },
      { term: '/etc/backy.conf', meaning: 'the central config of the scheduler daemon and backy check' },
    ]),
    '.SH SEE ALSO',
    roff(
      'backy help specs; the docs folder of the backy repository: scheduler.md, restore.md, storage.md, json.md.',
    ),
  );
  return `${lines.join('\n')}\n`;
}
