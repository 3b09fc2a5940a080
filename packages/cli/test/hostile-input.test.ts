// Issue 12: bad input and destructive mistakes, as an adversarial operator would try them.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BIN, backy, oneLineError, type Result, tempDir } from './helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
let arch: string;
const b = (...args: string[]) => backy(['-b', arch, ...args]);
const ids = () =>
  (JSON.parse(b('status', '--json').stdout).revisions as { uuid: string }[]).map((r) => r.uuid);

beforeEach(async () => {
  dir = await tempDir();
  arch = join(dir.path, 'archive');
  const image = join(dir.path, 'disk.img');
  await writeFile(image, randomBytes(6 * MiB));
  expect(b('init', 'file', image).code).toBe(0);
  for (const tag of ['manual:a', 'manual:b']) expect(b('backup', '-f', tag).code).toBe(0);
});
afterEach(() => dir.cleanup());

/** Runs backy with its stdout's reading end closed at once. */
function withClosedStdout(args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, '-b', arch, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code, stdout: '', stderr }));
  });
}

describe('destructive commands', () => {
  it('forget of a set needs --force; --dry-run lists exactly what would go', () => {
    const before = ids();
    for (const spec of ['all', 'tag:manual:a', 'trust:trusted']) {
      const refused = b('forget', '-r', spec);
      expect(refused.code).toBe(2);
      expect(oneLineError(refused)).toMatch(/selects \d revisions?; add --force/);
    }
    expect(ids()).toEqual(before);
    const dry = b('forget', '-r', 'all', '--dry-run');
    expect(dry.code).toBe(0);
    expect(
      dry.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(':')[0]),
    ).toEqual(before);
    expect(dry.stdout).toContain('would be forgotten');
    expect(ids()).toEqual(before);
    // One revision by its number needs no --force.
    expect(b('forget', '-r', '0').code).toBe(0);
    expect(b('forget', '-r', 'all', '--force').code).toBe(0);
    expect(ids()).toEqual([]);
  });

  it('expire and purge --dry-run change nothing and say what would go', () => {
    expect(b('expire', '--dry-run').stdout).toContain('nothing to expire');
    expect(b('forget', '-r', 'all', '--force').code).toBe(0);
    const dry = b('purge', '--dry-run');
    expect(dry.code).toBe(0);
    const listed = dry.stdout.split('\n').filter((l) => l.startsWith('would delete chunk '));
    expect(listed.length).toBeGreaterThan(0);
    expect(dry.stdout).toContain(`would purge ${listed.length} chunks`);
    expect(b('purge').stdout).toContain(`purged ${listed.length} chunks`);
  });
});

describe('clear one-line errors', () => {
  it('negative and non-numeric option values, unknown options', () => {
    const cases: [string[], RegExp][] = [
      [['restore', '-r', '-1', join(dir.path, 'out')], /revision "-1": revision numbers count from 0/],
      [['purge', '--wait', '-5'], /purge --wait "-5": expected a number of seconds/],
      [['purge', '--wait', 'abc'], /purge --wait "abc": expected a number of seconds/],
      [['status', '--human'], /status: unknown option --human; usage: backy status/],
    ];
    for (const [args, message] of cases) {
      const r = b(...args);
      expect(r.code, args.join(' ')).not.toBe(0);
      const line = oneLineError(r);
      expect(line).toMatch(message);
      expect(line).not.toMatch(/ambiguous|To specify|-- "/);
    }
    // With --json the error is JSON too (docs/json.md).
    const both = b('status', '--json', '--yaml');
    expect(both.code).toBe(2);
    expect(JSON.parse(both.stderr).error.message).toMatch(/--json and --yaml exclude each other/);
  });

  it('status -r SPEC, and a footer that counts the data the revisions hold', () => {
    const one = b('status', '-r', '0');
    expect(one.code).toBe(0);
    // Two revisions of the same 6 MiB: the second wrote nothing new, and both hold 6 MiB.
    expect(one.stdout).toMatch(/1 revision containing 6\.0 MiB data \(estimated\)$/m);
    expect(b('status').stdout).toMatch(/2 revisions containing 6\.0 MiB data \(estimated\)$/m);
  });

  it('a closed stdout pipe ends quietly; restore to it is still an error', async () => {
    const status = await withClosedStdout(['status']);
    expect(status).toMatchObject({ code: 141, stderr: '' });
    const restore = await withClosedStdout(['restore', '-']);
    expect(restore.code).toBe(1);
    expect(oneLineError(restore)).toMatch(
      /restore to stdout: the reader closed the pipe .* the image is incomplete/,
    );
  });

  it('check -c reports a config error as UNKNOWN (exit 3)', async () => {
    const conf = join(dir.path, 'backy.conf');
    const write = (source: Record<string, unknown>) =>
      writeFile(
        conf,
        JSON.stringify({
          global: { 'base-dir': dir.path },
          schedules: { s: { daily: { interval: '1d', keep: 1 } } },
          jobs: { j: { schedule: 's', source } },
        }),
      );
    for (const [source, message] of [
      [{ type: 'file' }, /jobs\.j\.source\.filename/],
      [{ type: 'no-such-source-package' }, /jobs\.j\.source\.type/],
    ] as const) {
      await write(source);
      const r = backy(['check', '-c', conf]);
      expect(r.code).toBe(3);
      expect(r.stdout).toMatch(new RegExp(`^UNKNOWN: ${conf}: .*${message.source}`));
      expect(r.stdout).not.toContain('No status file');
    }
  });

  it('a YAML alias bomb names the file', async () => {
    const config = join(arch, 'config');
    await writeFile(
      config,
      [
        'a: &a [x, x, x, x, x, x, x, x, x]',
        'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
        'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
        'source: [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
      ].join('\n'),
    );
    expect(oneLineError(b('status'))).toMatch(
      new RegExp(`^backy: error: ${config}: invalid YAML: Excessive alias count`),
    );
  });
});
