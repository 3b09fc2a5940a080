import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BackyError } from '@backy/core';
import { duplicateKeys, tempDir } from '@backy/core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';

/** An ANSI colour code (SGR), what NO_COLOR turns off. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding escape sequences is the point
const SGR = /\x1b\[[0-9;]*m/;

function capture(isTTY: boolean) {
  let text = '';
  return {
    isTTY,
    write(chunk: string | Uint8Array) {
      text += chunk.toString();
      return true;
    },
    text: () => text,
  };
}

const dirs: { cleanup(): Promise<void> }[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await d.cleanup();
});

async function logFile(): Promise<{ path: string; lines: () => Promise<string[]> }> {
  const dir = await tempDir('backy-logger-');
  dirs.push(dir);
  const path = join(dir.path, 'backy.log');
  return {
    path,
    lines: async () => (await readFile(path, 'utf8').catch(() => '')).split('\n').filter((l) => l !== ''),
  };
}

describe('createLogger', () => {
  it('writes info and up into the log file, debug only with -v', async () => {
    for (const verbose of [false, true]) {
      const file = await logFile();
      const logging = createLogger({ file: file.path, verbose, stderr: capture(false) });
      logging.logger.child({ revision: 'r' }).debug({ argv: ['rbd', 'ls'] }, 'running rbd');
      logging.logger.info('backup started');
      logging.flush();
      const levels = (await file.lines()).map((l) => (JSON.parse(l) as { level: number }).level);
      expect(levels).toEqual(verbose ? [20, 30] : [30]);
    }
  });

  it('prints one readable line per record on a terminal, only warnings and errors with quiet', () => {
    const tty = capture(true);
    const logger = createLogger({ file: null, verbose: false, stderr: tty, env: {} }).logger;
    logger
      .child({ revision: 'r1' })
      .info({ stats: { bytes_written: 5, chunks: [1, 2] } }, 'backup completed');
    const error = new BackyError('SOURCE_FAILED', 'rbd export failed', { cause: new Error('EIO') });
    logger.error({ err: error }, 'backup failed; no revision was created');
    const lines = tty.text().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('');
    expect(lines[0]).toContain('backup completed');
    expect(lines[0]).toContain('"stats":{"bytes_written":5,"chunks":[1,2]}');
    // An error is its message; the stack is the log file's.
    expect(lines[1]).toContain('"err":"rbd export failed: EIO"');
    expect(tty.text()).not.toContain('    at ');

    const quiet = capture(true);
    const q = createLogger({
      file: null,
      verbose: false,
      quiet: true,
      stderr: quiet,
      env: { NO_COLOR: '1' },
    }).logger;
    q.info('backup started');
    q.warn('careful');
    q.error('broken');
    expect(quiet.text()).not.toContain('backup started');
    expect(quiet.text()).toMatch(/WARN.*careful\n.*ERROR.*broken\n$/);
  });

  it('uses colours on a terminal unless NO_COLOR is set and not empty', () => {
    const coloured = (env: NodeJS.ProcessEnv) => {
      const tty = capture(true);
      createLogger({ file: null, verbose: false, stderr: tty, env }).logger.warn('careful');
      return SGR.test(tty.text());
    };
    expect(coloured({})).toBe(true);
    expect(coloured({ NO_COLOR: '' })).toBe(true);
    expect(coloured({ NO_COLOR: '1' })).toBe(false);
  });

  it('records the failure that ends a command once with its stack, in the file and not on the terminal', async () => {
    const file = await logFile();
    const tty = capture(true);
    const logging = createLogger({ file: file.path, verbose: false, stderr: tty, env: {} });
    const inner = new Error('ENOENT');
    const logged = new BackyError('SOURCE_UNAVAILABLE', 'no such file', { cause: inner });
    logging.logger.child({ revision: 'r' }).error({ err: logged }, 'backup failed; no revision was created');
    // The CLI's record of it: the error itself, or one that wraps it.
    logging.recordFailure(logged, { code: logged.code }, logged.message);
    const wrapper = new BackyError('IO', 'gave up', { cause: logged });
    logging.recordFailure(wrapper, { code: wrapper.code }, wrapper.message);
    // An error nobody logged yet keeps its stack.
    const fresh = new BackyError('LOCKED', 'archive is locked');
    logging.recordFailure(fresh, { code: fresh.code }, fresh.message);
    logging.flush();
    const lines = await file.lines();
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual([
      'backup failed; no revision was created',
      'no such file',
      'gave up',
      'archive is locked',
    ]);
    expect(lines.map((l) => l.includes('"stack"'))).toEqual([true, false, false, true]);
    expect(lines.map((l) => JSON.parse(l).code)).toEqual([undefined, 'SOURCE_UNAVAILABLE', 'IO', 'LOCKED']);
    expect(lines.flatMap(duplicateKeys)).toEqual([]);
    // The terminal had the first record only: the CLI prints its own line for the failure.
    expect(tty.text().trim().split('\n')).toHaveLength(1);
  });
});
