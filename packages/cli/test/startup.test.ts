import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backy, tempDir } from './helpers.js';

// What a command loads is what it costs to start (`pnpm bench:startup` measures the time; a test
// cannot, on a shared machine). Each run here records every module the binary loads: ES modules
// through a load hook, CommonJS ones (pino, the AWS SDK, yaml) from require's cache at exit.
const HOOKS = `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.BACKY_TEST_LOADED, url + '\\n');
  return next(url, context);
}`;
const RECORDER = `import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
register(new URL('./hooks.mjs', import.meta.url));
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => appendFileSync(process.env.BACKY_TEST_LOADED, Object.keys(cache).join('\\n') + '\\n'));`;

/** Every command but `except`, as their modules' chunks are named in dist/ (`status-AB12CD34.js`). */
const COMMAND_FILES = ['init', 'backup', 'find', 'restore', 'verify', 'copy', 'revisions', 'purge']
  .concat(['upgrade', 'nbd-server', 'scheduler', 'check', 'jobs', 'key', 'completion', 'status'])
  .map((name) => ({ name, pattern: new RegExp(`/cli/dist/${name}-[A-Z0-9]+\\.js$`) }));

const PACKAGES_OF_OTHER_COMMANDS = [
  '@aws-sdk',
  '@smithy',
  'store-s3',
  'scheduler/dist',
  'telnet-shell',
  'nbd-server',
  'source-ceph-rbd',
  'source-nbd',
  'source-qemu',
  'pino-pretty',
];

let dir: { path: string; cleanup: () => Promise<void> };
let n = 0;

/** Runs backy; the modules it loaded, as paths or URLs. */
async function loaded(args: string[]): Promise<string[]> {
  const file = join(dir.path, `loaded-${n++}`);
  const r = backy(args, {
    cwd: dir.path,
    env: { NODE_OPTIONS: `--import ${join(dir.path, 'recorder.mjs')}`, BACKY_TEST_LOADED: file },
  });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return (await readFile(file, 'utf8')).split('\n').filter((line) => line !== '');
}

const matching = (files: string[], needle: string | RegExp) =>
  files.filter((f) => (typeof needle === 'string' ? f.includes(needle) : needle.test(f)));

describe('start-up: a command loads its own modules and no other', () => {
  beforeAll(async () => {
    dir = await tempDir();
    await writeFile(join(dir.path, 'hooks.mjs'), HOOKS);
    await writeFile(join(dir.path, 'recorder.mjs'), RECORDER);
    await writeFile(join(dir.path, 'disk.img'), Buffer.alloc(1024 * 1024, 'startup'));
    const archive = { cwd: dir.path };
    expect(backy(['-b', 'a', 'init', 'file', join(dir.path, 'disk.img')], archive).code).toBe(0);
    expect(backy(['-b', 'a', 'backup', 'daily'], archive).code).toBe(0);
  }, 60_000);
  afterAll(() => dir?.cleanup());

  it('backy --version loads the CLI’s argument parsing only: no @backy/core, zod, yaml, pino, command', async () => {
    const files = await loaded(['--version']);
    expect(matching(files, '/cli/dist/main.js')).toHaveLength(1);
    for (const needle of ['@backy/core', 'packages/core/', 'zod', 'yaml', '/pino', 'cli-table3'])
      expect(matching(files, needle), needle).toEqual([]);
    for (const needle of PACKAGES_OF_OTHER_COMMANDS) expect(matching(files, needle), needle).toEqual([]);
    for (const { pattern } of COMMAND_FILES) expect(matching(files, pattern)).toEqual([]);
  });

  it('backy status on a directory archive loads the archive code and status, not the S3 SDK, pino or another command', async () => {
    const files = await loaded(['-b', 'a', 'status']);
    expect(matching(files, 'packages/core/dist/index.js')).toHaveLength(1);
    // zod and yaml are in core's bundle, cli-table3 in status's chunk: not ~190 files of their own
    // packages to resolve and read (the recorder sees ES modules and CommonJS ones alike).
    for (const needle of ['node_modules/zod/', 'node_modules/yaml/', 'node_modules/cli-table3/'])
      expect(matching(files, needle), needle).toEqual([]);
    for (const needle of [...PACKAGES_OF_OTHER_COMMANDS, '/pino'])
      expect(matching(files, needle), needle).toEqual([]);
    for (const { name, pattern } of COMMAND_FILES)
      expect(matching(files, pattern), name).toHaveLength(name === 'status' ? 1 : 0);
    // zod's 63 other message locales were 313 kB of the bundle that every command parsed (see
    // tsup.base.ts: zodEnglishOnly); English, which backy's messages are in, stays.
    const code = await Promise.all(
      matching(files, 'packages/core/dist/').map((f) => readFile(f.replace(/^file:\/\//, ''), 'latin1')),
    );
    expect(
      code.filter((text) => text.includes('Ung\\xFCltige Eingabe')),
      'German locale',
    ).toEqual([]);
    expect(
      code.filter((text) => text.includes('Invalid input')),
      'English locale',
    ).not.toEqual([]);
  });

  it('backy check without an api section reads the status file and loads no HTTP client', async () => {
    const base = join(dir.path, 'base');
    await mkdir(base, { recursive: true });
    await writeFile(join(base, 'status'), '[]\n');
    const conf = join(dir.path, 'backy.conf');
    await writeFile(conf, `global:\n  base-dir: ${base}\nschedules: {}\njobs: {}\n`);
    const files = await loaded(['check', '-c', conf]);
    expect(matching(files, /\/cli\/dist\/check-[A-Z0-9]+\.js$/)).toHaveLength(1);
    expect(matching(files, /\/cli\/dist\/api-client-[A-Z0-9]+\.js$/)).toEqual([]);
    for (const needle of ['node:https', 'node:tls', 'cli-table3'])
      expect(matching(files, needle), needle).toEqual([]);
  });
});
