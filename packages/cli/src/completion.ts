import { type Command, commandOptions, type OptionSpec, type OptionSpecs } from './command.js';
import { GLOBAL_OPTIONS } from './global-options.js';

export const COMPLETION_SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof COMPLETION_SHELLS)[number];

const GENERATED = "Generated from backy's command definitions (`backy completion SHELL`); do not edit.";

/** A word the scripts carry unquoted: option names, command names, choices. */
function word(text: string): string {
  if (!/^[A-Za-z0-9_.:=+-]+$/.test(text))
    throw new Error(`completion: ${JSON.stringify(text)} is not a plain word`);
  return text;
}

const flags = (name: string, o: OptionSpec): string[] => [
  ...(o.short != null ? [`-${word(o.short)}`] : []),
  `--${word(name)}`,
];

/** The completion script for `shell`, from the same definitions as `--help`. */
export function completionScript(shell: Shell, commands: readonly Command[]): string {
  if (shell === 'bash') return bashScript(commands);
  if (shell === 'zsh') return zshScript(commands);
  return fishScript(commands);
}

function bashValue(o: OptionSpec | 'file' | 'dir' | readonly string[] | undefined): string {
  const complete = typeof o === 'object' && !Array.isArray(o) ? (o as OptionSpec).complete : o;
  if (complete === 'file') return 'COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null';
  if (complete === 'dir') return 'COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null';
  if (Array.isArray(complete)) return `COMPREPLY=($(compgen -W "${complete.map(word).join(' ')}" -- "$cur"))`;
  return 'COMPREPLY=()';
}

/** `case "$prev"` arms for the options that take a value. */
function bashValueCases(options: OptionSpecs, indent: string): string[] {
  return Object.entries(options)
    .filter(([, o]) => o.type === 'string')
    .map(([name, o]) => `${indent}${flags(name, o).join('|')}) ${bashValue(o)}; return ;;`);
}

function bashScript(commands: readonly Command[]): string {
  const globalWords = Object.entries(GLOBAL_OPTIONS).flatMap(([n, o]) => flags(n, o));
  const globalWithValue = Object.entries(GLOBAL_OPTIONS)
    .filter(([, o]) => o.type === 'string')
    .flatMap(([n, o]) => flags(n, o));
  const arms = commands.map((c) => {
    const options = commandOptions(c);
    const words = Object.entries(options).flatMap(([n, o]) => flags(n, o));
    const valueCases = bashValueCases(options, '        ');
    return [
      `    ${word(c.name)})`,
      ...(valueCases.length > 0 ? ['      case "$prev" in', ...valueCases, '      esac'] : []),
      `      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "${words.join(' ')}" -- "$cur")); return; fi`,
      `      ${bashValue(c.completeArguments)}`,
      '      ;;',
    ].join('\n');
  });
  return `# bash completion for backy. ${GENERATED}
# Install: backy completion bash > /etc/bash_completion.d/backy (or source it from ~/.bashrc).
_backy() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" i
  (( COMP_CWORD > 0 )) && prev="\${COMP_WORDS[COMP_CWORD-1]}"
  for (( i = 1; i < COMP_CWORD; i++ )); do
    case "\${COMP_WORDS[i]}" in
      ${globalWithValue.join('|')}) (( i++ )) ;;
      -*) ;;
      *) cmd="\${COMP_WORDS[i]}"; break ;;
    esac
  done
  if [[ -z $cmd ]]; then
    case "$prev" in
${bashValueCases(GLOBAL_OPTIONS, '      ').join('\n')}
    esac
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "${globalWords.join(' ')}" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "${commands.map((c) => word(c.name)).join(' ')}" -- "$cur"))
    fi
    return
  fi
  case "$cmd" in
${arms.join('\n')}
    *) COMPREPLY=() ;;
  esac
}
complete -F _backy backy
`;
}

/** Text inside a single-quoted zsh word. */
const zshQuoted = (text: string): string => text.replace(/'/g, "'\\''");
/** Text of an _arguments spec's description or message: `[`, `]` and `\` mean something there. */
const zshSpecText = (text: string): string => zshQuoted(text.replace(/([[\]\\])/g, '\\$1'));

function zshAction(complete: OptionSpec['complete'] | Command['completeArguments']): string {
  if (complete === 'file') return '_files';
  if (complete === 'dir') return '_files -/';
  if (Array.isArray(complete)) return `(${complete.map(word).join(' ')})`;
  return ' ';
}

function zshOptionSpecs(options: OptionSpecs): string[] {
  return Object.entries(options).map(([name, o]) => {
    const names = flags(name, o);
    const value =
      o.type === 'string' ? `:${zshSpecText(o.valueName ?? 'VALUE')}:${zshAction(o.complete)}` : '';
    const text = `'[${zshSpecText(o.description)}]${value}'`;
    const exclusive = o.multiple === true ? "'*'" : names.length > 1 ? `'(${names.join(' ')})'` : '';
    return names.length > 1 ? `${exclusive}{${names.join(',')}}${text}` : `${exclusive}'${names[0]}'${text}`;
  });
}

function zshScript(commands: readonly Command[]): string {
  const arms = commands.map((c) => {
    const args =
      c.completeArguments != null && (c.positionals?.[1] ?? 1) > 0
        ? [`'*:argument:${zshAction(c.completeArguments)}'`]
        : [];
    return [
      `    ${word(c.name)})`,
      `      _arguments -s ${[...zshOptionSpecs(commandOptions(c)), ...args].join(' \\\n        ')}`,
      '      ;;',
    ].join('\n');
  });
  return `#compdef backy
# zsh completion for backy. ${GENERATED}
# Install: backy completion zsh > "\${fpath[1]}/_backy" (a directory in $fpath), then compinit.
_backy() {
  local curcontext="$curcontext" state line ret=1
  typeset -A opt_args
  _arguments -C -s \\
    ${zshOptionSpecs(GLOBAL_OPTIONS).join(' \\\n    ')} \\
    '1:command:->command' \\
    '*::argument:->argument' && ret=0
  case $state in
    command)
      local -a commands
      commands=(
${commands.map((c) => `        '${word(c.name)}:${zshQuoted(c.summary)}'`).join('\n')}
      )
      _describe -t commands 'backy command' commands && ret=0
      ;;
    argument)
      curcontext="\${curcontext%:*:*}:backy-$line[1]:"
      case $line[1] in
${arms.join('\n')}
      esac
      ;;
  esac
  return ret
}
if [[ "\${funcstack[1]}" == _backy ]]; then _backy "$@"; else compdef _backy backy; fi
`;
}

/** A single-quoted fish string. */
const fishQuote = (text: string): string => `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

function fishValue(complete: OptionSpec['complete'] | Command['completeArguments']): string {
  if (complete === 'file') return '-F';
  if (complete === 'dir') return "-f -a '(__fish_complete_directories)'";
  if (Array.isArray(complete)) return `-f -a ${fishQuote(complete.map(word).join(' '))}`;
  return '-f';
}

function fishOptions(condition: string, options: OptionSpecs): string[] {
  return Object.entries(options).map(([name, o]) => {
    const parts = ['complete -c backy', `-n ${fishQuote(condition)}`];
    if (o.short != null) parts.push(`-s ${word(o.short)}`);
    parts.push(`-l ${word(name)}`);
    if (o.type === 'string') parts.push('-r', fishValue(o.complete));
    parts.push(`-d ${fishQuote(o.description)}`);
    return parts.join(' ');
  });
}

function fishScript(commands: readonly Command[]): string {
  const lines = [
    `# fish completion for backy. ${GENERATED}`,
    '# Install: backy completion fish > ~/.config/fish/completions/backy.fish',
    'complete -c backy -f',
    ...fishOptions('__fish_use_subcommand', GLOBAL_OPTIONS),
    ...commands.map(
      (c) => `complete -c backy -n __fish_use_subcommand -a ${word(c.name)} -d ${fishQuote(c.summary)}`,
    ),
  ];
  for (const c of commands) {
    const condition = `__fish_seen_subcommand_from ${word(c.name)}`;
    lines.push(...fishOptions(condition, commandOptions(c)));
    if (c.completeArguments != null)
      lines.push(`complete -c backy -n ${fishQuote(condition)} ${fishValue(c.completeArguments)}`);
  }
  return `${lines.join('\n')}\n`;
}
