import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { openLogFile } from './log-file.js';

const read = (path: string) => readFile(path, 'utf8').catch(() => '');

describe('openLogFile', () => {
  it('continues in a new file at the same path after the old one was moved or deleted', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-log-'));
    const path = join(dir, 'sub', 'daemon.log');
    const file = openLogFile(path, { checkIntervalMs: 20 });
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
    const file = openLogFile(path, { checkIntervalMs: 60_000 });
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
});
