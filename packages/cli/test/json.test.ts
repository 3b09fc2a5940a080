import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MiB } from '@backy/core/testing';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { backy, damageChunkOf, type Result, tempDir } from './helpers.js';

// The shapes are documented in docs/json.md: a field renamed here must be renamed there.
let dir: { path: string; cleanup: () => Promise<void> };
let arch: string;
let image: string;
let data: Buffer;
let lastCommand = '';
const b = (...args: string[]) => {
  lastCommand = args.find((a) => !a.startsWith('-')) ?? '';
  return backy(['-b', arch, ...args]);
};

/** The JSON Schemas the package ships (dist/schema/COMMAND.json), generated from src/json-output.ts. */
const SCHEMA_DIR = fileURLToPath(new URL('../dist/schema/', import.meta.url));
const ajv = new Ajv2020({ allErrors: true, strict: false });
const validators = new Map(
  readdirSync(SCHEMA_DIR).map((file) => [
    file.replace(/\.json$/, ''),
    ajv.compile(JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8'))),
  ]),
);

/** Asserts `value` matches the shipped schema of `command`, and that every key in it is camelCase. */
function conforms(command: string, value: unknown): void {
  const validate = validators.get(command);
  expect(validate, `a schema for ${command}`).toBeDefined();
  expect(validate!(value), `${command}: ${ajv.errorsText(validate!.errors)}`).toBe(true);
  const keys = (v: unknown): string[] =>
    Array.isArray(v)
      ? v.flatMap(keys)
      : v != null && typeof v === 'object'
        ? Object.entries(v).flatMap(([k, x]) => [k, ...keys(x)])
        : [];
  expect(
    keys(value).filter((k) => !/^[a-z][a-zA-Z0-9]*$/.test(k)),
    `${command}: keys`,
  ).toEqual([]);
}

/**
 * stdout is exactly one JSON document (JSON.parse refuses anything before or after it), with
 * `version: 1`, valid against the command's shipped schema; returned without `version`.
 */
// biome-ignore lint/suspicious/noExplicitAny: the tests read fields of parsed JSON
function json(r: Result, code = 0, command = lastCommand): Record<string, any> {
  expect(r.code, r.stderr).toBe(code);
  const { version, ...rest } = JSON.parse(r.stdout);
  expect(version).toBe(1);
  conforms(command, { version, ...rest });
  return rest;
}

/** Under --json an error is one line of JSON on stderr, its last line; returns its `error`. */
function jsonError(r: Result, code: number): { code: string; message: string; exitCode: number } {
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe('');
  const last = r.stderr.trimEnd().split('\n').at(-1)!;
  const parsed = JSON.parse(last);
  conforms('error', parsed);
  expect(parsed.error.exitCode).toBe(code);
  return parsed.error;
}

beforeAll(async () => {
  dir = await tempDir();
  arch = join(dir.path, 'archive');
  image = join(dir.path, 'disk.img');
  data = Buffer.concat([randomBytes(8 * MiB), Buffer.alloc(1 * MiB)]);
  await writeFile(image, data);
  expect(b('init', 'file', image).code).toBe(0);
});
afterAll(() => dir.cleanup());

describe('--json: one documented JSON document on stdout per command', () => {
  let first: string;
  let second: string;

  it('backup: the new revision with its stats', async () => {
    const out = json(b('backup', '--json', 'daily'));
    expect(Object.keys(out)).toEqual(['revision']);
    const rev = out.revision;
    expect(rev.uuid).toMatch(/^[A-Za-z0-9]{10,}$/);
    expect(rev.tags).toEqual(['daily']);
    expect(rev.size).toBe(data.length);
    expect(rev.trust).toBe('trusted');
    expect(typeof rev.timestamp).toBe('string');
    expect(rev.stats).toMatchObject({ chunksWritten: 2, chunksZero: 1, chunksReused: 0 });
    expect(rev.stats.bytesWritten).toBeGreaterThan(0);
    expect(typeof rev.stats.duration).toBe('number');
    first = rev.uuid;
    // What status --json lists is the same object.
    const listed = json(b('status', '--json')).revisions as { uuid: string }[];
    expect(listed.map((r) => r.uuid)).toEqual([first]);
    randomBytes(1000).copy(data, 5 * MiB);
    await writeFile(image, data);
    second = json(b('backup', '--json', 'daily')).revision.uuid;
    expect(second).not.toBe(first);
  });

  it('restore: the revision, its size, the target and its kind', async () => {
    const target = join(dir.path, 'restored.img');
    const r = b('restore', '--json', target);
    const out = json(r);
    expect(out).toEqual({ revision: second, size: data.length, target, kind: 'file' });
    expect(r.stderr).toBe('');
    expect((await readFile(target)).equals(data)).toBe(true);
    // With `-` stdout carries the image: no room for JSON.
    const both = b('restore', '--json', '-');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--json needs a TARGET file');
  });

  it('verify: per revision its result and the damaged offsets', async () => {
    const good = json(b('verify', '--json'));
    expect(good.revisions).toEqual([
      { uuid: first, result: 'verified', damaged: [], problem: null, retention: null },
      { uuid: second, result: 'verified', damaged: [], problem: null, retention: null },
    ]);
    const hash = await damageChunkOf(arch, second, 1);
    const bad = json(b('verify', '--json', '-r', second), 1);
    expect(bad.revisions).toHaveLength(1);
    expect(bad.revisions[0]).toMatchObject({ uuid: second, result: 'damaged', problem: null });
    expect(bad.revisions[0].damaged).toEqual([
      { offset: 4 * MiB, index: 1, hash, reason: expect.stringContaining('damaged') },
    ]);
  });

  it('expire: per revision whether it goes and which tags expire', () => {
    const none = json(b('expire', '--json', '--dry-run'));
    expect(none).toEqual({ dryRun: true, revisions: [] });
    expect(b('tags', 'set', '-r', first, '').code).toBe(0);
    // Without tags, but the newest verified revision (verify above): it stays, and says why.
    expect(json(b('expire', '--json', '--dry-run'))).toEqual({
      dryRun: true,
      revisions: [{ uuid: first, removed: false, expiredTags: [], keptBy: 'newest-verified' }],
    });
    expect(b('distrust', '-r', first).code).toBe(0);
    const planned = json(b('expire', '--json', '--dry-run'));
    expect(planned).toEqual({
      dryRun: true,
      revisions: [{ uuid: first, removed: true, expiredTags: [], keptBy: null }],
    });
    const done = json(b('expire', '--json'));
    expect(done).toEqual({
      dryRun: false,
      revisions: [{ uuid: first, removed: true, expiredTags: [], keptBy: null }],
    });
  });

  it('forget: the revisions forgotten (or that would be)', () => {
    const dry = json(b('forget', '--json', '--dry-run', '-r', second));
    expect(dry.dryRun).toBe(true);
    expect(dry.revisions).toEqual([
      { uuid: second, timestamp: expect.any(String), tags: ['daily'], result: 'would be forgotten' },
    ]);
    const done = json(b('forget', '--json', '-r', second));
    expect(done).toMatchObject({ dryRun: false, revisions: [{ uuid: second, result: 'forgotten' }] });
    expect(json(b('status', '--json'))).toEqual({ revisions: [] });
  });

  it('purge: what it deleted, and with --dry-run what it would', () => {
    const dry = json(b('purge', '--json', '--dry-run'));
    expect(dry).toMatchObject({ dryRun: true, chunksKept: 0, archives: 1, staleEntries: [] });
    // Chunk 0 and the first revision's chunk 1; the second's chunk 1 was moved aside by verify as damaged.
    expect(dry.chunksDeleted).toBe(2);
    expect(dry.wouldDelete.filter((e: { kind: string }) => e.kind === 'damaged')).toHaveLength(1);
    expect(dry.wouldDelete.length).toBeGreaterThanOrEqual(dry.chunksDeleted);
    expect(dry.wouldDelete.filter((e: { kind: string }) => e.kind === 'chunk')).toHaveLength(
      dry.chunksDeleted,
    );
    for (const entry of dry.wouldDelete) {
      expect(['chunk', 'damaged', 'temporary']).toContain(entry.kind);
      expect(typeof entry.path).toBe('string');
      expect(typeof entry.bytes).toBe('number');
    }
    const done = json(b('purge', '--json'));
    expect(done).toMatchObject({
      dryRun: false,
      chunksDeleted: dry.chunksDeleted,
      bytesFreed: dry.bytesFreed,
    });
    expect(done).not.toHaveProperty('wouldDelete');
  });

  it('check: the Nagios state, its summary line and details', async () => {
    const missing = json(backy(['check', '--json', '-c', join(dir.path, 'no-such.conf')]), 3, 'check');
    expect(missing).toMatchObject({
      status: 'UNKNOWN',
      exitCode: 3,
      details: [],
      statusFile: null,
      api: null,
    });
    expect(missing.summary).toMatch(/^UNKNOWN: /);
    const conf = join(dir.path, 'backy.conf');
    await writeFile(
      conf,
      stringify({
        global: { 'base-dir': join(dir.path, 'base') },
        schedules: { s: { daily: { interval: '1d', keep: 3 } } },
        jobs: { vm: { schedule: 's', source: { type: 'file', filename: image } } },
      }),
    );
    const noStatus = json(backy(['check', '--json', '-c', conf]), 3, 'check');
    expect(noStatus.status).toBe('UNKNOWN');
    expect(noStatus.statusFile).toEqual(expect.stringContaining(join(dir.path, 'base')));
    expect(noStatus.summary).toContain('No status file');
    // Without --json the same answer as the Nagios line.
    expect(backy(['check', '-c', conf]).stdout).toBe(`${noStatus.summary}\n`);
  });

  it('init, find, tags, distrust, upgrade and key: --json too, each in its shipped schema', async () => {
    const other = join(dir.path, 'other');
    const o = (...args: string[]) => {
      lastCommand = args.find((a) => !a.startsWith('-')) ?? '';
      return backy(['-b', other, ...args]);
    };
    expect(json(o('init', '--json', 'file', image))).toEqual({
      archive: other,
      sourceType: 'file',
      source: image,
      layout: 'chunked',
    });
    const one = json(o('backup', '--json', 'daily')).revision.uuid;
    const two = json(o('backup', '--json', 'daily')).revision.uuid;
    expect(json(o('find', '--json'))).toEqual({ revision: two, image: null });

    const dry = json(o('tags', 'add', '--json', '--dry-run', '--force', '-r', 'all', 'manual:x'));
    expect(dry).toMatchObject({
      dryRun: true,
      revisions: [
        { uuid: one, tags: ['daily', 'manual:x'], previousTags: ['daily'], result: 'would be changed' },
        { uuid: two, tags: ['daily', 'manual:x'], previousTags: ['daily'], result: 'would be changed' },
      ],
    });
    const changed = json(o('tags', 'add', '--json', '-r', one, 'manual:x'));
    expect(changed.revisions).toMatchObject([{ uuid: one, tags: ['daily', 'manual:x'], result: 'changed' }]);

    const distrusted = json(o('distrust', '--json', '-r', two));
    expect(distrusted).toEqual({
      dryRun: false,
      revisions: [{ uuid: two, timestamp: expect.any(String), tags: ['daily'], result: 'distrusted' }],
    });
    expect(json(o('status', '--json', '-r', two)).revisions[0].trust).toBe('distrusted');
    expect(json(o('upgrade', '--json', '--dry-run'))).toEqual({
      dryRun: true,
      revisions: [],
      legacyChunksRemoved: 0,
    });

    const key = join(dir.path, 'json.key');
    const env = { env: { BACKY_KEY_PASSPHRASE: '' } };
    lastCommand = 'key';
    const created = json(backy(['key', 'create', '--json', key], env));
    expect(created).toEqual({
      action: 'create',
      file: key,
      id: expect.stringMatching(/^[0-9a-f]{16}$/),
      passphrase: false,
    });
    const exported = json(backy(['key', 'export', '--json', key], env));
    expect(exported).toMatchObject({ action: 'export', file: key, id: created.id });
    const copy = join(dir.path, 'json-copy.key');
    const imported = json(backy(['key', 'import', '--json', copy], { ...env, input: exported.exported }));
    expect(imported).toEqual({ action: 'import', file: copy, id: created.id });
  }, 240_000);

  it('errors under --json: one JSON line on stderr with the code, the message and the same exit status', () => {
    const usage = jsonError(b('status', '--json', '--bogus'), 2);
    expect(usage).toEqual({
      code: 'USAGE',
      message: expect.stringContaining('unknown option --bogus'),
      exitCode: 2,
    });
    expect(b('status', '--bogus').code).toBe(2);
    const notFound = jsonError(b('verify', '--json', '-r', 'nosuchrevision'), 1);
    expect(notFound.code).toBe('REVISION_NOT_FOUND');
    expect(b('verify', '-r', 'nosuchrevision').code).toBe(1);
    const noArchive = jsonError(backy(['-b', join(dir.path, 'nowhere'), 'status', '--json']), 1);
    expect(noArchive.code).toBe('ARCHIVE_NOT_FOUND');
    expect(noArchive.message).toContain(join(dir.path, 'nowhere'));
    // Before the command name is known too.
    expect(jsonError(backy(['--json']), 2).code).toBe('USAGE');
  }, 120_000);

  it('ships a JSON Schema for every command that takes --json', async () => {
    // The man page is written from the same definitions as --help: one section per command.
    const man = await readFile(fileURLToPath(new URL('../dist/man/backy.1', import.meta.url)), 'utf8');
    const sections = man.split(/^\.SS /m).slice(1);
    const withJson = sections
      .filter((section) => section.includes('\\fB\\-\\-json\\fR'))
      .map((section) => section.split('\n')[0]!.replace(/\\-/g, '-'));
    expect(withJson).toContain('status');
    expect([...validators.keys()].sort()).toEqual([...withJson, 'error'].sort());
  });
});
