import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { duplicateKeys, MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backy, oneLineError, tempDir } from './helpers.js';

// The per-archive backy.log of real runs of the built binary (see docs/logs.md).

let dir: { path: string; cleanup: () => Promise<void> };
let arch: string;
let image: string;
const b = (...args: string[]) => backy(['-b', arch, ...args]);
const logLines = async () =>
  (await readFile(join(arch, 'backy.log'), 'utf8')).split('\n').filter((l) => l !== '');

beforeAll(async () => {
  dir = await tempDir();
  arch = join(dir.path, 'archive');
  image = join(dir.path, 'disk.img');
  await writeFile(image, randomBytes(6 * MiB));
  expect(b('init', 'file', image).code).toBe(0);
});
afterAll(() => dir.cleanup());

describe('backy.log', () => {
  it('holds info records of a backup, none of them with a key twice', async () => {
    const r = b('backup', 'daily');
    expect(r.code, r.stderr).toBe(0);
    const lines = await logLines();
    const records = lines.map((l) => JSON.parse(l) as { level: number; msg: string; pid: number });
    expect(records.map((l) => l.msg)).toContain('backup completed');
    expect(records.every((l) => l.level >= 30 && typeof l.pid === 'number')).toBe(true);
    expect(lines.flatMap(duplicateKeys)).toEqual([]);
  });

  it('has one stack trace per failure, and stderr one line', async () => {
    await rm(image);
    const before = (await logLines()).length;
    const failed = b('backup', 'daily');
    expect(failed.code).toBe(1);
    expect(oneLineError(failed)).toBe(`backy: error: source file ${image}: no such file`);
    // A failure the library did not log before the CLI did: its stack is in the CLI's record.
    const missing = b('restore', '-r', 'no-such-revision', join(dir.path, 'out.img'));
    expect(missing.code).toBe(1);
    oneLineError(missing);
    const lines = (await logLines()).slice(before);
    expect(lines.flatMap(duplicateKeys)).toEqual([]);
    const byPid = new Map<number, string[]>();
    for (const line of lines) {
      const { pid } = JSON.parse(line) as { pid: number };
      byPid.set(pid, [...(byPid.get(pid) ?? []), line]);
    }
    const [backup, restore] = [...byPid.values()];
    const stacks = (run: string[]) => run.join('\n').split('"stack"').length - 1;
    expect(stacks(backup!)).toBe(1);
    expect(backup!.at(-1)).toContain('"code":"SOURCE_UNAVAILABLE"');
    expect(stacks(restore!)).toBe(1);
  });
});
