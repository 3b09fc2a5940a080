import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { openLogFile } from './log-file.js';

const read = (path: string) => readFile(path, 'utf8').catch(() => '');
const unexpected = (error: Error) => {
  throw error;
};

describe('openLogFile', () => {
  it('continues in a new file at the same path after the old one was moved or deleted', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-log-'));
    const path = join(dir, 'sub', 'daemon.log');
    const file = openLogFile(path, { checkIntervalMs: 20, onFailure: unexpected });
    const log = pino(file.stream);
    log.info('one');
    await rename(path, `${path}.1`);
    log.info('two'); // still into the moved file: nobody noticed yet
    await new Promise((r) => setTimeout(r, 100));
    log.info('three');
    await rm(path);
    await new Promise((r) => setTimeout(r, 100));
    log.info('four');
    file.close();
    expect((await read(`${path}.1`)).match(/"msg":"\w+"/g)).toEqual(['"msg":"one"', '"msg":"two"']);
    expect(await read(path)).toContain('"msg":"four"');
  });

  it('reopens on demand (SIGHUP after logrotate)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-log-'));
    const path = join(dir, 'daemon.log');
    const file = openLogFile(path, { checkIntervalMs: 60_000, onFailure: unexpected });
    const log = pino(file.stream);
    log.info('before');
    await rename(path, `${path}.1`);
    file.reopen();
    log.info('after');
    file.close();
    expect(await read(`${path}.1`)).toContain('"msg":"before"');
    expect(await read(path)).toContain('"msg":"after"');
    expect(await read(path)).not.toContain('"msg":"before"');
  });

  it('never throws when the file cannot be written, reports that once, and resumes when it can', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-log-'));
    const path = join(dir, 'daemon.log');
    const failures: string[] = [];
    const file = openLogFile(path, { checkIntervalMs: 60_000, onFailure: (e) => failures.push(e.code!) });
    const log = pino(file.stream);
    log.info('before');
    await rm(dir, { recursive: true }); // the open file is gone; make writes fail by replacing the dir
    await writeFile(dir, 'not a directory');
    file.reopen(); // cannot open: writes are dropped
    expect(() => log.info('lost 1')).not.toThrow();
    expect(() => log.info('lost 2')).not.toThrow();
    expect(failures).toHaveLength(1); // EEXIST or ENOTDIR: the directory is a file now
    await rm(dir);
    log.info('back'); // the directory is made again and the line written
    file.close();
    expect(await read(path)).toContain('"msg":"back"');
    expect(await read(path)).not.toContain('lost');
  });
});
