import { parseArgs } from 'node:util';
import { describe, expect, it } from 'vitest';
import { commandParseOptions } from './args.js';
import type { OptionSpecs } from './command.js';
import { GLOBAL_OPTIONS } from './global-options.js';

/** Parses the words after a command name as main does; returns the command's values and the globals. */
function parseAfter(command: OptionSpecs, args: string[]) {
  const { options, globals } = commandParseOptions(GLOBAL_OPTIONS, command);
  const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true });
  const own: Record<string, unknown> = {};
  const global: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) (globals.has(key) ? global : own)[key] = value;
  return { own, global, positionals };
}

describe('global options after the command name', () => {
  it('no clash: a global option is taken anywhere, by its letter and its name', () => {
    const command: OptionSpecs = { json: { type: 'boolean', description: 'x' } };
    expect(parseAfter(command, ['-q', 'daily', '-b', '/a', '--json'])).toEqual({
      own: { json: true },
      global: { quiet: true, backupdir: '/a' },
      positionals: ['daily'],
    });
    expect(parseAfter(command, ['--verbose', '--logfile=/l'])).toMatchObject({
      global: { verbose: true, logfile: '/l' },
    });
  });

  it("a command's option of the same name (and letter) is the command's after the command name", () => {
    // As `backy scheduler -l FILE`: the daemon's log.
    const command: OptionSpecs = { logfile: { type: 'string', short: 'l', description: 'x' } };
    expect(parseAfter(command, ['-l', '/d', '-v'])).toEqual({
      own: { logfile: '/d' },
      global: { verbose: true },
      positionals: [],
    });
    expect(parseAfter(command, ['--logfile', '/d'])).toMatchObject({ own: { logfile: '/d' }, global: {} });
  });

  it("a command's option that takes a global letter has the letter; the global keeps its name", () => {
    const command: OptionSpecs = { limit: { type: 'string', short: 'l', description: 'x' } };
    expect(parseAfter(command, ['-l', '5', '--logfile', '/g'])).toEqual({
      own: { limit: '5' },
      global: { logfile: '/g' },
      positionals: [],
    });
  });

  it('after `--` a word that looks like a global option is an argument', () => {
    const command: OptionSpecs = { revision: { type: 'string', short: 'r', description: 'x' } };
    expect(parseAfter(command, ['--revision=-q'])).toMatchObject({ own: { revision: '-q' }, global: {} });
    expect(parseAfter(command, ['--', '-q'])).toMatchObject({ global: {}, positionals: ['-q'] });
  });
});
