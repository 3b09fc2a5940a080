import { spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAppendLog } from './log-file.js';
import { tempDir } from './testing/helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

const isRoot = process.getuid?.() === 0;

describe('openAppendLog', () => {
  it('appends whole lines and creates the directory', async () => {
    const path = join(dir.path, 'sub', 'backy.log');
    const log = openAppendLog(path, () => {});
    log.write('{"a":1}\n');
    log.write('{"b":2}\n');
    log.close();
    expect(await readFile(path, 'utf8')).toBe('{"a":1}\n{"b":2}\n');
  });

  // A real full disk: a tmpfs of 64 KiB (mounting needs root).
  it.skipIf(!isRoot)(
    'after a full disk tore a record, the next one starts on a line of its own',
    async () => {
      const mnt = join(dir.path, 'small');
      await mkdir(mnt);
      const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
      if (mounted.status !== 0) throw new Error(`mount tmpfs failed: ${mounted.stderr}`);
      try {
        const filler = join(mnt, 'filler');
        await writeFile(filler, Buffer.alloc(32 * 1024));
        const path = join(mnt, 'backy.log');
        const failures: string[] = [];
        const log = openAppendLog(path, (error) => failures.push(error.code ?? ''));
        // Records of 1000 bytes: the page the disk runs out in takes part of one.
        const record = (n: number) => `${JSON.stringify({ n, pad: 'x'.repeat(980) }).padEnd(999, ' ')}\n`;
        let n = 0;
        while (failures.length === 0 && n < 200) log.write(record(n++));
        expect(failures).toEqual(['ENOSPC']);
        const torn = (await readFile(path, 'utf8')).length % 1000;
        expect(torn).toBeGreaterThan(0); // the disk filled in the middle of a record
        log.write(record(n++)); // still full: dropped
        await rm(filler);
        log.write(record(n++));
        log.write(record(n++));
        log.close();
        const lines = (await readFile(path, 'utf8')).split('\n');
        expect(lines.at(-1)).toBe('');
        const parsed = lines.slice(0, -1).map((line) => {
          try {
            return (JSON.parse(line) as { n: number }).n;
          } catch {
            return null;
          }
        });
        // Only the torn record is lost; the two after the disk had room again parse on their own.
        expect(parsed.filter((p) => p == null)).toHaveLength(1);
        expect(parsed.slice(-2)).toEqual([n - 2, n - 1]);
      } finally {
        spawnSync('umount', [mnt]);
      }
    },
  );
});
