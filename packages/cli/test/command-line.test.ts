import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { BIN, backy, oneLineError, skipWithout, tempDir } from './helpers.js';

/** An ANSI color (SGR) sequence; built from a string, as a control character in a regex literal is easy to miss. */
const ANSI_COLOR = new RegExp(`${String.fromCharCode(27)}\\[[\\d;]*m`);
const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
let dir: { path: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  dir = await tempDir();
  helpIndex();
}, 180_000);
afterAll(() => dir.cleanup());

interface HelpOption {
  line: string;
  long: string;
  short: string | null;
}
let cachedIndex: Map<string, HelpOption[]> | null = null;
const usages = new Map<string, string>();

/** The commands `backy --help` lists, each with the options its own `--help` lists (run once). */
function helpIndex(): Map<string, HelpOption[]> {
  if (cachedIndex != null) return cachedIndex;
  const top = backy(['--help']).stdout;
  const names = top
    .split('\ncommands:\n')[1]!
    .split('\n\n')[0]!
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0]!);
  expect(names.length).toBeGreaterThan(15);
  const index = new Map<string, HelpOption[]>();
  for (const name of names) {
    const help = backy([name, '--help']);
    expect(help.code, name).toBe(0);
    usages.set(name, help.stdout.split('\n')[0]!);
    const options = help.stdout
      .split('\noptions:\n')[1]!
      .split('\n\n')[0]!
      .split('\n')
      .filter((l) => /^ {2}-/.test(l))
      .map((line) => {
        const m = /^ {2}(?:-(\w), )?--([\w-]+)/.exec(line)!;
        return { line, long: m[2]!, short: m[1] ?? null };
      });
    index.set(name, options);
  }
  cachedIndex = index;
  return index;
}

describe('--help and backy help', () => {
  it('every command lists every option of its usage line, each with a description; defaults are shown', () => {
    const index = helpIndex();
    for (const [name, options] of index) {
      const usage = usages.get(name)!;
      for (const m of usage.matchAll(/\[(-{1,2}[\w-]+)/g)) {
        const flag = m[1]!;
        expect(
          options.some((o) => `--${o.long}` === flag || `-${o.short}` === flag),
          `${name} --help lists ${flag}`,
        ).toBe(true);
      }
      for (const o of options)
        expect(o.line, `${name} --${o.long}`).toMatch(/--[\w-]+(?: \S+)?\s{2,}\S.{8,}/);
      expect(options.map((o) => o.long)).toContain('help');
    }
    const line = (command: string, option: string) =>
      index.get(command)!.find((o) => o.long === option)!.line;
    expect(line('restore', 'revision')).toMatch(/-r, --revision SPEC .*\(default: last\)/);
    expect(line('verify', 'revision')).toContain('(default: all)');
    expect(line('purge', 'wait')).toMatch(/--wait SECONDS .*\(default: 0\)/);
    expect(line('check', 'config')).toContain('(default: $BACKY_CONFIG, else /etc/backy.conf)');
    for (const command of ['check', 'jobs', 'run'])
      expect(line(command, 'token-file')).toContain(
        "(default: $BACKY_API_TOKEN, else the config's first api token this user can read)",
      );
    expect(line('nbd-server', 'port')).toContain('(default: 10809)');
    expect(line('init', 'option')).toContain('repeatable');
    for (const command of [
      'backup',
      'restore',
      'verify',
      'purge',
      'forget',
      'expire',
      'check',
      'status',
      'copy',
      'init',
      'find',
      'tags',
      'distrust',
      'upgrade',
      'key',
    ])
      expect(
        index.get(command)!.map((o) => o.long),
        command,
      ).toContain('json');
    const top = backy(['--help']).stdout;
    for (const global of ['--backupdir DIR', '--logfile FILE', '--verbose', '--quiet', '--version'])
      expect(top).toContain(global);
    expect(top).toMatch(/-b, --backupdir DIR .*default: \$BACKY_DIR, else the current directory/);
  });

  it('backy help specs, exit-codes and environment; backy help COMMAND is its --help', () => {
    const specs = backy(['help', 'specs']);
    expect(specs.code).toBe(0);
    for (const form of ['last, latest', '0, 1, 2', 'tag:TAG', 'trust:STATE', 'all', 'ID'])
      expect(specs.stdout).toContain(form);
    const codes = backy(['help', 'exit-codes']).stdout;
    for (const code of ['0', '1', '2', '69', '130', '141'])
      expect(codes).toMatch(new RegExp(`^ {2}${code} `, 'm'));
    const env = backy(['help', 'environment']).stdout;
    for (const name of [
      'BACKY_DIR',
      'BACKY_CONFIG',
      'NO_COLOR',
      'BACKY_PASSPHRASE_FILE',
      'BACKY_PASSPHRASE_COMMAND',
      'BACKY_KEY_PASSPHRASE',
      'AWS_PROFILE',
    ])
      expect(env).toContain(name);
    // The global help carries the same sections.
    const top = backy(['--help']).stdout;
    expect(top).toContain(specs.stdout.trim());
    expect(top).toContain(codes.trim());
    expect(backy(['help', 'restore']).stdout).toBe(backy(['restore', '--help']).stdout);
    expect(backy(['help', 'constructor']).code).toBe(2);
    const unknown = backy(['help', 'nonsense']);
    expect(unknown.code).toBe(2);
    expect(oneLineError(unknown)).toContain('no command or topic "nonsense"');
  });
});

describe('BACKY_DIR', () => {
  it('names the archive when -b is not given; -b wins over it; without either the current directory', async () => {
    const image = join(dir.path, 'env.img');
    await writeFile(image, randomBytes(MiB));
    const arch = join(dir.path, 'env-archive');
    const elsewhere = join(dir.path, 'elsewhere');
    expect(backy(['init', 'file', image], { env: { BACKY_DIR: arch } }).code).toBe(0);
    expect(existsSync(join(arch, 'config'))).toBe(true);
    const backup = backy(['backup', 'daily'], { cwd: dir.path, env: { BACKY_DIR: arch } });
    expect(backup.code, backup.stderr).toBe(0);
    expect(
      JSON.parse(backy(['status', '--json'], { cwd: dir.path, env: { BACKY_DIR: arch } }).stdout).revisions,
    ).toHaveLength(1);
    const wins = backy(['-b', elsewhere, 'status'], { env: { BACKY_DIR: arch } });
    expect(wins.code).not.toBe(0);
    expect(oneLineError(wins)).toContain(elsewhere);
    // Unset or empty: the current directory.
    expect(
      JSON.parse(backy(['status', '--json'], { cwd: arch, env: { BACKY_DIR: '' } }).stdout).revisions,
    ).toHaveLength(1);
  });
});

describe('global options after the command (as restic and proxmox-backup-client take them)', () => {
  it('-b, -q and -v go anywhere; given twice, the later wins', async () => {
    const image = join(dir.path, 'after.img');
    await writeFile(image, randomBytes(MiB));
    const arch = join(dir.path, 'after-archive');
    expect(backy(['init', 'file', image, '-b', arch]).code).toBe(0);
    const backup = backy(['backup', '-q', 'daily', '-b', arch]);
    expect(backup.code, backup.stderr).toBe(0);
    const status = backy(['status', '--json', '-b', arch]);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).revisions).toHaveLength(1);
    const later = backy(['-b', join(dir.path, 'nowhere'), 'status', '-b', arch]);
    expect(later.code, later.stderr).toBe(0);
    expect(oneLineError(backy(['-b', arch, 'status', '-b', join(dir.path, 'nowhere')]))).toContain('nowhere');
    expect(backy(['status', '-b', arch, '-q', '-v']).code).toBe(2);
  });

  it("an option the command defines itself is the command's after its name: scheduler -l is the daemon's log", async () => {
    const log = join(dir.path, 'daemon.log');
    const missing = join(dir.path, 'no-such-central.conf');
    // -v is global (no clash), -l the scheduler's own; the config error is the daemon's, not a usage error.
    const r = backy(['scheduler', '-v', '-c', missing, '-l', log]);
    expect(r.code, r.stderr).toBe(1);
    expect(oneLineError(r)).toContain(missing);
    expect(await readFile(log, 'utf8')).toContain(missing);
  });
});

describe('BACKY_CONFIG', () => {
  it('names the central config of check (and scheduler) when -c is not given; -c wins', async () => {
    const conf = join(dir.path, 'env-backy.conf');
    const base = join(dir.path, 'env-base');
    await writeFile(
      conf,
      stringify({
        global: { 'base-dir': base },
        schedules: { s: { daily: { interval: '1d', keep: 3 } } },
        jobs: { vm: { schedule: 's', source: { type: 'file', filename: join(dir.path, 'x.img') } } },
      }),
    );
    const fromEnv = JSON.parse(backy(['check', '--json'], { env: { BACKY_CONFIG: conf } }).stdout);
    expect(fromEnv.statusFile).toEqual(expect.stringContaining(base));
    const other = join(dir.path, 'other.conf');
    const wins = JSON.parse(backy(['check', '--json', '-c', other], { env: { BACKY_CONFIG: conf } }).stdout);
    expect(wins).toMatchObject({ status: 'UNKNOWN', statusFile: null });
    expect(wins.summary).toContain(other);
    expect(backy(['help', 'environment']).stdout).toMatch(/BACKY_CONFIG/);
    expect(backy(['help', 'environment']).stdout).toMatch(
      /BACKY_API_TOKEN +the token check, jobs and run send/,
    );
    expect(backy(['check', '--help']).stdout).toContain('$BACKY_CONFIG, else /etc/backy.conf');
  });
});

describe('tags and distrust of several revisions: --dry-run, and a yes or --force', () => {
  let arch: string;
  const b = (...args: string[]) => backy(['-b', arch, ...args]);
  const revisions = () =>
    JSON.parse(b('status', '--json').stdout).revisions as { uuid: string; tags: string[]; trust: string }[];
  beforeAll(async () => {
    const image = join(dir.path, 'set.img');
    await writeFile(image, randomBytes(MiB));
    arch = join(dir.path, 'set-archive');
    expect(b('init', 'file', image).code).toBe(0);
    for (let i = 0; i < 2; i++) expect(b('backup', 'daily').code).toBe(0);
  });

  it('--dry-run prints what would change and changes nothing', () => {
    const before = revisions();
    const tags = b('tags', 'set', '--dry-run', '-r', 'all', 'manual:x');
    expect(tags.code, tags.stderr).toBe(0);
    expect(tags.stdout).toContain(`${before[0]!.uuid}: daily -> manual:x (would be changed)`);
    const distrust = b('distrust', '--dry-run');
    expect(distrust.code, distrust.stderr).toBe(0);
    expect(distrust.stdout).toContain(`${before[1]!.uuid}: would be distrusted`);
    expect(revisions()).toEqual(before);
  });

  it('more than one revision without a terminal needs --force; one does not', () => {
    const before = revisions();
    const tags = b('tags', 'set', '-r', 'all', 'manual:x');
    expect(tags.code).toBe(2);
    expect(oneLineError(tags)).toContain('tags set -r all changes 2 revisions; add --force');
    const distrust = b('distrust', '--from', '2000-01-01');
    expect(distrust.code).toBe(2);
    expect(oneLineError(distrust)).toContain('changes 2 revisions; add --force');
    expect(revisions()).toEqual(before);
    expect(b('tags', 'add', '-r', 'last', 'manual:one').code).toBe(0);
    const forced = b('tags', 'set', '--force', '-r', 'all', 'manual:x');
    expect(forced.code, forced.stderr).toBe(0);
    expect(revisions().map((r) => r.tags)).toEqual([['manual:x'], ['manual:x']]);
    expect(b('distrust', '-f').code).toBe(0);
    expect(revisions().map((r) => r.trust)).toEqual(['distrusted', 'distrusted']);
  });

  it.skipIf(skipWithout('a terminal', 'script') != null)('asks on a terminal; only a yes changes', () => {
    const onTerminal = (args: string, input: string) =>
      spawnSync('script', ['-qec', `${process.execPath} ${BIN} -b ${arch} ${args}`, '/dev/null'], {
        encoding: 'utf8',
        input,
      });
    const no = onTerminal('tags set -r all daily', 'n\n');
    expect(no.stdout).toMatch(/changes 2 revisions of .*; go on\? \[y\/N\]/);
    expect(revisions().map((r) => r.tags)).toEqual([['manual:x'], ['manual:x']]);
    const yes = onTerminal('tags set -r all daily', 'y\n');
    expect(yes.status, yes.stdout).toBe(0);
    expect(revisions().map((r) => r.tags)).toEqual([['daily'], ['daily']]);
  });
});

describe.skipIf(skipWithout('terminal output', 'script') != null)(
  'on a terminal: --quiet and NO_COLOR',
  () => {
    let arch: string;
    const onTerminal = (args: string, env: NodeJS.ProcessEnv = {}) =>
      spawnSync('script', ['-qec', `${process.execPath} ${BIN} -b ${arch} ${args}`, '/dev/null'], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
    beforeAll(async () => {
      const image = join(dir.path, 'tty.img');
      await writeFile(image, randomBytes(24 * MiB));
      arch = join(dir.path, 'tty-archive');
      expect(backy(['-b', arch, 'init', 'file', image]).code).toBe(0);
    });

    it('colors and info lines by default; NO_COLOR keeps the lines without any color', () => {
      const plain = onTerminal('backup daily', { NO_COLOR: '' });
      expect(plain.status).toBe(0);
      expect(plain.stdout).toMatch(/INFO/);
      expect(plain.stdout).toMatch(ANSI_COLOR);
      const noColor = onTerminal('backup daily', { NO_COLOR: '1' });
      expect(noColor.status).toBe(0);
      expect(noColor.stdout).toMatch(/INFO.*backup completed/);
      expect(noColor.stdout).not.toMatch(ANSI_COLOR);
    });

    it('--quiet: no progress and no info lines, the result and errors still', async () => {
      const r = onTerminal('-q backup daily');
      expect(r.status).toBe(0);
      expect(r.stdout).not.toMatch(/INFO/);
      expect(r.stdout).not.toMatch(/backup\s+\[[#-]*\]/);
      expect(r.stdout.trim().split('\n')).toHaveLength(1);
      expect(r.stdout).toMatch(/daily: .* written/);
      // The log file still has everything.
      const log = await readFile(join(arch, 'backy.log'), 'utf8');
      expect(JSON.parse(log.trim().split('\n').at(-1)!).msg).toBe('backup completed');
      const restored = join(dir.path, 'tty-restored.img');
      const restore = onTerminal(`-q restore ${restored}`);
      expect(restore.status).toBe(0);
      expect(restore.stdout).toBe('');
      const error = onTerminal('-q restore -r nope /dev/null');
      expect(error.status).toBe(1);
      expect(error.stdout.trim().split('\n')).toEqual([
        expect.stringMatching(/^backy: error: revision "nope"/),
      ]);
    });
  },
);

describe('shell completion and man page', () => {
  const bashComplete = (...words: string[]): string[] => {
    const script = join(DIST, 'completions', 'backy.bash');
    const quoted = words.map((w) => `'${w}'`).join(' ');
    const r = spawnSync(
      'bash',
      [
        '-c',
        `source '${script}'; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _backy; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ],
      { encoding: 'utf8', cwd: dir.path },
    );
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.split('\n').filter(Boolean);
  };

  it('ships what `backy completion` prints, in dist/', async () => {
    for (const [shell, file] of [
      ['bash', 'backy.bash'],
      ['zsh', '_backy'],
      ['fish', 'backy.fish'],
    ] as const) {
      const printed = backy(['completion', shell]);
      expect(printed.code).toBe(0);
      expect(printed.stdout).toBe(await readFile(join(DIST, 'completions', file), 'utf8'));
      expect(printed.stdout).toContain('do not edit');
    }
    expect(backy(['completion', 'man']).stdout).toBe(await readFile(join(DIST, 'man', 'backy.1'), 'utf8'));
    const pkg = JSON.parse(
      await readFile(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8'),
    );
    expect(pkg.man).toEqual(['./dist/man/backy.1']);
    expect(pkg.files).toContain('dist');
    expect(backy(['completion', 'tcsh']).code).toBe(2);
  });

  it('bash completes commands, every option of every command, and option values', () => {
    expect(bashComplete('backy', 're')).toEqual(['restore']);
    expect(bashComplete('backy', 'c')).toEqual(['copy', 'check', 'completion']);
    expect(bashComplete('backy', 'r')).toEqual(['restore', 'run']);
    expect(bashComplete('backy', 'j')).toEqual(['jobs']);
    expect(bashComplete('backy', 'run', '--t')).toEqual(['--token-file']);
    expect(bashComplete('backy', '--b')).toEqual(['--backupdir']);
    for (const [command, options] of helpIndex()) {
      const offered = bashComplete('backy', '-b', '/srv/x', command, '-');
      for (const o of options) {
        expect(offered, `${command} --${o.long}`).toContain(`--${o.long}`);
        if (o.short != null) expect(offered, `${command} -${o.short}`).toContain(`-${o.short}`);
      }
      expect(offered.length).toBe(options.length + options.filter((o) => o.short != null).length);
    }
    expect(bashComplete('backy', 'init', '--layout', '')).toEqual(['chunked', 'images']);
    expect(bashComplete('backy', 'key', '')).toEqual(['create', 'export', 'import']);
    expect(bashComplete('backy', 'tags', 'a')).toEqual(['add']);
    expect(bashComplete('backy', 'completion', '')).toEqual(['bash', 'zsh', 'fish', 'man']);
    expect(bashComplete('backy', 'help', 'sp')).toEqual(['specs']);
    // A value is not taken for the command: -b's directory, then the command.
    expect(bashComplete('backy', '-b', 'status', 'verify', '--j')).toEqual(['--json']);
  });

  it.skipIf(skipWithout('zsh completion', 'zsh') != null)(
    'the zsh script parses and hands zsh every command with its summary and every option',
    () => {
      const script = join(DIST, 'completions', '_backy');
      const syntax = spawnSync('zsh', ['-n', script], { encoding: 'utf8' });
      expect(syntax.stderr).toBe('');
      expect(syntax.status).toBe(0);
      // zsh's completion functions stubbed to print what the script hands them, one word a line.
      const stubbed = (state: string, command = '') =>
        spawnSync(
          'zsh',
          [
            '-fc',
            `_arguments() { print -rl -- "$@" ---; state=${state}; line=(${command}); }
             _describe() { print -rl -- "\${(@P)4}" ---; }
             compdef() { :; }
             source '${script}'; _backy`,
          ],
          { encoding: 'utf8' },
        );
      const top = stubbed('command');
      expect(top.stderr).toBe('');
      const summaries = top.stdout.split('---\n')[1]!.trim().split('\n');
      const listed = backy(['--help']).stdout.split('\ncommands:\n')[1]!.split('\n\n')[0]!.split('\n');
      expect(summaries).toEqual(listed.map((l) => l.trim().replace(/^(\S+)\s+/, '$1:')));
      expect(top.stdout).toContain('\n(-b --backupdir)-b[the archive directory]:DIR:_files -/\n');
      for (const [command, options] of helpIndex()) {
        const r = stubbed('argument', command);
        expect(r.stderr, command).toBe('');
        const specs = r.stdout.split('---\n')[1]!.split('\n');
        for (const o of options)
          expect(
            specs.some((spec) => new RegExp(`^(\\(.*\\)|\\*)?--${o.long}\\[[^\\]]`).test(spec)),
            `${command} --${o.long}`,
          ).toBe(true);
      }
      expect(stubbed('argument', 'restore').stdout).toContain(
        '\n--force[overwrite an existing TARGET file]\n',
      );
      expect(stubbed('argument', 'key').stdout).toContain('\n*:argument:(create export import)\n');
    },
  );

  it.skipIf(skipWithout('fish completion', 'fish') != null)('fish completes commands and options', () => {
    const complete = (line: string) => {
      const r = spawnSync(
        'fish',
        ['--no-config', '-c', `source '${join(DIST, 'completions', 'backy.fish')}'; complete -C '${line}'`],
        { encoding: 'utf8' },
      );
      expect(r.stderr).toBe('');
      return r.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t')[0]);
    };
    expect(complete('backy re')).toEqual(['restore']);
    expect(complete('backy verify --')).toEqual(expect.arrayContaining(['--revision', '--json', '--help']));
    expect(complete('backy init --layout ')).toEqual(['chunked', 'images']);
  });

  it('the man page names every command and option', async () => {
    const page = await readFile(join(DIST, 'man', 'backy.1'), 'utf8');
    expect(page).toMatch(/^\.\\" .*do not edit/);
    expect(page).toMatch(/^\.TH BACKY 1 /m);
    for (const section of [
      'NAME',
      'SYNOPSIS',
      'DESCRIPTION',
      'OPTIONS',
      'COMMANDS',
      'REVISION SPECS',
      'EXIT STATUS',
      'ENVIRONMENT',
    ])
      expect(page).toContain(`\n.SH ${section}\n`);
    for (const [command, options] of helpIndex()) {
      const body = page.split(`\n.SS ${command.replace(/-/g, '\\-')}\n`)[1]?.split('\n.SS ')[0];
      expect(body, `man page section of ${command}`).toBeDefined();
      for (const o of options)
        expect(body, `${command} --${o.long}`).toContain(`\\-\\-${o.long.replace(/-/g, '\\-')}`);
    }
    // No line a roff request would swallow: text lines never start with . or ' unless they are requests.
    for (const line of page.split('\n'))
      if (/^[.']/.test(line)) expect(line, line).toMatch(/^\.(\\"|TH|SH|SS|TP|PP|B) ?/);
  });

  it.skipIf(skipWithout('man page rendering', 'groff') != null)(
    'groff renders the man page without a warning',
    () => {
      const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', join(DIST, 'man', 'backy.1')], {
        encoding: 'utf8',
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const text = spawnSync('groff', ['-man', '-Tascii', '-P-cbou', join(DIST, 'man', 'backy.1')], {
        encoding: 'utf8',
      }).stdout;
      expect(text).toMatch(/--revision SPEC/);
      expect(text).toContain('BACKY_DIR');
    },
  );
});
