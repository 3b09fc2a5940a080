import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  captureLogger,
  duplicateKeys,
  MiB,
  tempArchive,
  tempDir,
  vmLikeData,
  vmRegionKind,
  writeVmImage,
} from './helpers.js';

describe('test helpers', () => {
  it('captureLogger keeps every line parsed and picks out the warnings', () => {
    const log = captureLogger();
    log.logger.debug('quiet');
    log.logger.child({ job: 'a' }).warn({ n: 1 }, 'careful');
    log.logger.error('broken');
    expect(log.lines.map((l) => [l.level, l.msg])).toEqual([
      [20, 'quiet'],
      [40, 'careful'],
      [50, 'broken'],
    ]);
    expect(log.warnings()).toMatchObject([{ msg: 'careful', job: 'a', n: 1 }]);
  });

  it('duplicateKeys finds a key repeated in one object, at any depth, and nothing else', () => {
    expect(duplicateKeys('{"pid":1,"snapshot":"a","pid":2}')).toEqual(['pid']);
    expect(
      duplicateKeys('{"a":{"x":1,"y":[{"k":"\\"},\\\\","k":2}],"x":3},"b":[],"c":{},"d":"a\\"b","x":null}'),
    ).toEqual(['a.y[0].k', 'a.x']);
    expect(duplicateKeys('{"level":30,"msg":"x","a":{"msg":"y"},"list":[1,true,null,-2.5e3]}')).toEqual([]);
    const log = captureLogger();
    log.logger.child({ snapshot: 's' }).info({ snapshot: 't' }, 'repeated');
    expect(log.raw.flatMap(duplicateKeys)).toEqual(['snapshot']);
    expect(() => duplicateKeys('{"a":')).toThrow();
  });

  it('tempArchive makes an archive in a directory of its own and removes it all', async () => {
    const { dir, archive, cleanup } = await tempArchive({ source: { type: 'test' }, layout: 'images' });
    expect(archive.path).toBe(join(dir, 'archive'));
    expect(await archive.revisions()).toEqual([]);
    await cleanup();
    await expect(stat(dir)).rejects.toThrow(/ENOENT/);
  });

  it('makes VM-like data: 40% random, 30% zero, 30% log-like text that compresses a few times', async () => {
    const kinds = Array.from({ length: 10 }, (_, i) => vmRegionKind(i));
    expect(kinds.filter((k) => k === 'random')).toHaveLength(4);
    expect(kinds.filter((k) => k === 'zero')).toHaveLength(3);
    const data = vmLikeData(10 * MiB);
    const region = (i: number) => data.subarray(i * MiB, (i + 1) * MiB);
    for (let i = 0; i < 10; i++) {
      const kind = vmRegionKind(i);
      if (kind === 'zero') expect(region(i).equals(Buffer.alloc(MiB))).toBe(true);
      if (kind === 'text') expect(region(i).toString('latin1')).toMatch(/^2026-11-\d\dT[\d:]+ pid=\d+ \S/);
    }
    expect(vmRegionKind(1)).toBe('text');
    const ratio = MiB / deflateRawSync(region(1), { level: 1 }).length;
    expect(ratio).toBeGreaterThan(2);
    expect(ratio).toBeLessThan(10);
  });

  it('writes a VM-like image file in 4 MiB regions', async () => {
    const { path, cleanup } = await tempDir();
    try {
      const image = join(path, 'vm.img');
      await writeVmImage(image, 12 * MiB + 512);
      const data = await readFile(image);
      expect(data.length).toBe(12 * MiB + 512);
      expect([0, 1, 2, 3].map(vmRegionKind)).toEqual(['random', 'text', 'zero', 'random']);
      expect(data.subarray(4 * MiB, 4 * MiB + 5).toString()).toBe('2026-');
      expect(data.subarray(8 * MiB, 12 * MiB).equals(Buffer.alloc(4 * MiB))).toBe(true);
      expect(data.subarray(12 * MiB).equals(Buffer.alloc(512))).toBe(false);
    } finally {
      await cleanup();
    }
  });
});
