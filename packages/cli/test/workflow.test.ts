import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, backy, backyRaw, skipWithout, tempDir } from './helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
let image: string;
let arch: string;
let v1: Buffer;
const b = (...args: string[]) => backy(['-b', arch, ...args]);

beforeAll(async () => {
  dir = await tempDir();
  image = join(dir.path, 'disk.img');
  arch = join(dir.path, 'archive');
  v1 = Buffer.concat([
    randomBytes(5 * MiB),
    Buffer.alloc(8 * MiB),
    Buffer.from('log line\n'.repeat(400_000)),
  ]);
  await writeFile(image, v1);
});
afterAll(() => dir.cleanup());

describe('backy end to end', () => {
  it('prints version and help', () => {
    expect(backy(['--version']).stdout).toMatch(/^backy \d+\.\d+\.\d+/);
    const help = backy(['--help']);
    expect(help.code).toBe(0);
    for (const cmd of [
      'init',
      'backup',
      'status',
      'find',
      'restore',
      'verify',
      'distrust',
      'forget',
      'tags',
      'expire',
      'purge',
    ]) {
      expect(help.stdout).toContain(`  ${cmd} `);
    }
    expect(backy(['restore', '--help']).stdout).toContain('usage: backy restore');
    const unknown = backy(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  it('initialises an archive and refuses to overwrite it', async () => {
    const r = b('init', 'file', image);
    expect(r.code).toBe(0);
    expect(await readFile(join(arch, 'config'), 'utf8')).toContain(`filename: ${image}`);
    const again = b('init', 'file', image);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists');
  });

  it('backs up, backs up incrementally, and shows status', async () => {
    const first = b('backup', 'daily');
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const changed = Buffer.from(v1);
    randomBytes(100).copy(changed, 6 * MiB);
    await writeFile(image, changed);
    const second = b('backup', 'daily,weekly');
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/1 new \/ 3 reused \/ 1 zero chunks/);
    const status = b('status');
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/Date \(UTC\)\s*│\s*ID\s*│\s*Size\s*│\s*Duration\s*│\s*Tags\s*│\s*Trust/);
    expect(status.stdout).toContain('daily,weekly');
    expect(status.stdout).toMatch(/2 revisions containing [\d.]+ MiB data \(estimated\)/);
    const json = JSON.parse(b('status', '--json').stdout).revisions;
    expect(json).toHaveLength(2);
    expect(json[1].tags).toEqual(['daily', 'weekly']);
    expect(json[1].parent).toBe(json[0].uuid);
    expect(b('status', '--yaml').stdout).toContain(`uuid: ${json[0].uuid}`);
  });

  it('finds and restores revisions to files and stdout', async () => {
    const revs = JSON.parse(b('status', '--json').stdout).revisions;
    expect(b('find', '-r', 'weekly').stdout.trim()).toBe(revs[1].uuid);
    expect(b('find').stdout.trim()).toBe(revs[1].uuid);
    const out = join(dir.path, 'restored.img');
    const r = b('restore', '-r', '1', out);
    expect(r.code).toBe(0);
    expect((await readFile(out)).equals(v1)).toBe(true);
    const refused = b('restore', '-r', '1', out);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('already exists; use --force');
    expect(b('restore', '--force', '-r', revs[1].uuid.slice(0, 6), out).code).toBe(0);
    expect((await readFile(out)).equals(await readFile(image))).toBe(true);
    const piped = backyRaw(['-b', arch, 'restore', '-r', revs[0].uuid, '-']);
    expect(piped.code).toBe(0);
    expect(piped.stdout.equals(v1)).toBe(true);
  });

  it('verifies, distrusts, retags, forgets, expires and purges', () => {
    const verify = b('verify');
    expect(verify.code).toBe(0);
    expect(verify.stdout.match(/: verified/g)).toHaveLength(2);
    expect(b('status').stdout).toContain('verified');
    expect(b('distrust', '-r', 'last').code).toBe(0);
    expect(JSON.parse(b('status', '--json').stdout).revisions[1].trust).toBe('distrusted');
    const third = b('backup', 'daily');
    expect(third.stdout).toMatch(/4 new \/ 0 reused/); // distrusted newest: every chunk rewritten
    expect(b('tags', 'add', '-r', 'last', 'manual:keep').code).toBe(0);
    expect(b('tags', 'remove', '-r', 'last', 'daily').stdout).toContain('manual:keep');
    expect(b('tags', 'set', '-r', 'last', 'bad tag').code).toBe(2);
    expect(b('forget', '-r', '0').code).toBe(0);
    expect(JSON.parse(b('status', '--json').stdout).revisions).toHaveLength(2);
    expect(b('expire').stdout).toContain('nothing to expire');
    const purge = b('purge');
    expect(purge.code).toBe(0);
    expect(purge.stdout).toMatch(/purged \d+ chunks .*; \d+ chunks in use by 1 archive/);
  });
});

describe('on a terminal', () => {
  it.skipIf(skipWithout('terminal progress', 'script') != null)(
    'shows progress and readable log lines',
    async () => {
      const term = await tempDir();
      try {
        const img = join(term.path, 'disk.img');
        await writeFile(img, randomBytes(40 * MiB));
        const a = join(term.path, 'a');
        expect(backy(['-b', a, 'init', 'file', img]).code).toBe(0);
        const r = spawnSync(
          'script',
          ['-qec', `${process.execPath} ${BIN} -b ${a} backup daily`, '/dev/null'],
          { encoding: 'utf8' },
        );
        expect(r.status).toBe(0);
        expect(r.stdout).toMatch(/backup\s+\[[#-]+\]\s+\d+%/); // the progress bar
        expect(r.stdout).toMatch(/INFO.*backup completed/); // pino-pretty line
        const log = await readFile(join(a, 'backy.log'), 'utf8');
        expect(JSON.parse(log.trim().split('\n').at(-1)!).msg).toBe('backup completed');
        // Off a terminal, the same command prints only its result line.
        const quiet = backy(['-b', a, 'backup', 'daily']);
        expect(quiet.stderr).toBe('');
        expect(quiet.stdout.trim().split('\n')).toHaveLength(1);
        // NO_COLOR (no-color.org): the same lines without colour codes, each record on one line.
        const plain = spawnSync(
          'script',
          ['-qec', `${process.execPath} ${BIN} -b ${a} backup daily`, '/dev/null'],
          { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } },
        );
        expect(plain.status).toBe(0);
        expect(plain.stdout).toMatch(/\] INFO: backup completed \{"revision":"[^"]+","stats":\{.*\}\r?\n/);
        // biome-ignore lint/suspicious/noControlCharactersInRegex: finding colour codes is the point
        expect(plain.stdout).not.toMatch(/\x1b\[[0-9;]*m/);
      } finally {
        await term.cleanup();
      }
    },
  );
});
