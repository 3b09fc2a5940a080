/**
 * The `nbd` source with a dirty bitmap against qemu-nbd (full, then incremental from the bitmap), the
 * sample check against a bitmap that missed writes, and the pure pieces of the bitmap logic.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runBackup } from '@backy/core';
import { isBackyError } from '@backy/core/source';
import { MiB, restoreToBuffer, tempArchive, tempDir } from '@backy/core/testing';
import { nbdToolsSkip, qemuImg, qemuIo, qemuNbd, type Server } from '@backy/test-env/nbd';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pickSample, sampleSize } from '../src/export-backup.js';
import { createNbdSource } from '../src/nbd-source.js';
import { bitmapProblem, createQcow2Source, imageInfo } from '../src/qcow2.js';

const skipReason = nbdToolsSkip('source-nbd');

const suite = skipReason != null ? describe.skip : describe;
const logger = pino({ level: 'silent' });

describe('bitmap checks', () => {
  it('names why a bitmap cannot make an incremental', () => {
    expect(bitmapProblem([{ name: 'backy-a', flags: ['auto'] }], 'backy-a')).toBeNull();
    expect(bitmapProblem([], 'backy-a')).toMatch(/backy-a the parent revision recorded is missing/);
    expect(bitmapProblem([{ name: 'backy-a', flags: ['in-use', 'auto'] }], 'backy-a')).toMatch(
      /inconsistent/,
    );
    expect(bitmapProblem([{ name: 'backy-a', flags: [] }], 'backy-a')).toMatch(/disabled/);
  });

  it('samples distinct kept chunks: 0.2%, at least 8, never more than there are', () => {
    expect(sampleSize(3)).toBe(3);
    expect(sampleSize(1000)).toBe(8);
    expect(sampleSize(100_000)).toBe(200);
    const sample = pickSample([5, 6, 7, 8, 9, 10, 11, 12, 13, 14], 4);
    expect(new Set(sample).size).toBe(4);
    expect(sample.every((i) => i >= 5 && i <= 14)).toBe(true);
    expect(sample).toEqual([...sample].sort((a, b) => a - b));
  });
});

suite('nbd source with a dirty bitmap (qemu-nbd)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let image: string;
  let server: Server | null = null;
  const socket = () => join(dir.path, 'nbd.sock');
  const serve = async () => {
    await server?.stop();
    server = await qemuNbd(image, 'qcow2', ['--read-only', '--bitmap=b0'], socket());
  };
  /** qemu-io needs the image's write lock: the server is stopped while writing. */
  const write = async (...commands: string[]) => {
    await server?.stop();
    server = null;
    await qemuIo(image, ...commands);
    await serve();
  };
  const content = async () => {
    const raw = join(dir.path, 'content.raw');
    await qemuImg('convert', '-U', '-f', 'qcow2', '-O', 'raw', image, raw);
    return readFile(raw);
  };

  beforeAll(async () => {
    dir = await tempDir();
    image = join(dir.path, 'disk.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', image, '64M');
    await qemuIo(image, 'write -q -P 0x11 0 24M', 'write -q -P 0x12 40M 8M');
    await qemuImg('bitmap', '--add', image, 'b0');
    await serve();
  });
  afterAll(async () => {
    await server?.stop();
    await dir?.cleanup();
  });

  it('reads only the allocated chunks, then only the dirty ones, and restores both', async () => {
    const { archive, cleanup } = await tempArchive({ source: { type: 'nbd' } });
    try {
      const source = createNbdSource({ url: `nbd+unix:///vm?socket=${socket()}`, bitmap: 'b0' });
      const full = await runBackup(archive, source, { tags: ['a'], force: true, logger });
      expect(full.source_info).toMatchObject({ mode: 'full', bitmap: 'b0' });
      expect(full.stats.bytes_read).toBe(32 * MiB);
      expect((await restoreToBuffer(archive, full.uuid)).equals(await content())).toBe(true);

      await write('write -q -P 0x21 4M 64k', 'write -q -P 0x22 30M 1M');
      const incr = await runBackup(archive, source, { tags: ['b'], force: true, logger });
      expect(incr.source_info).toMatchObject({ mode: 'incremental', from_bitmap: 'b0' });
      expect(incr.stats.chunks_written).toBe(2);
      // Two dirty chunks, one of them over a hole but for the written MiB, plus the sample.
      const sampled = incr.source_info!.sample_checked as number;
      expect(incr.stats.bytes_read).toBeLessThanOrEqual((2 + sampled) * 4 * MiB);
      expect(incr.verification).toMatchObject({ ok: true, method: 'partial' });
      expect((await restoreToBuffer(archive, incr.uuid)).equals(await content())).toBe(true);
    } finally {
      await cleanup();
    }
  });

  it('makes a full backup when a sampled kept chunk differs from the parent', async () => {
    const { archive, cleanup } = await tempArchive({ source: { type: 'nbd' } });
    try {
      // Every chunk is sampled, so the chunk written behind the bitmap's back is certainly among them.
      const source = createNbdSource(
        { url: `nbd+unix:///vm?socket=${socket()}`, bitmap: 'b0' },
        { sampleChunks: 16 },
      );
      await runBackup(archive, source, { tags: ['a'], force: true, logger });
      await server?.stop();
      server = null;
      await qemuImg('bitmap', '--disable', image, 'b0');
      await qemuIo(image, 'write -q -P 0x31 44M 4k');
      await qemuImg('bitmap', '--enable', image, 'b0');
      await serve();
      const rev = await runBackup(archive, source, { tags: ['b'], force: true, logger });
      expect(rev.source_info).toMatchObject({ mode: 'full', sample_mismatches: 1 });
      expect(rev.trust).toBe('trusted');
      expect((await restoreToBuffer(archive, rev.uuid)).equals(await content())).toBe(true);
    } finally {
      await cleanup();
    }
  });
});

suite('qcow2 source and a running VM', () => {
  it('refuses an image another process holds, in one line, and leaves no bitmap', async () => {
    const dir = await tempDir();
    const image = join(dir.path, 'vm.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', image, '8M');
    // A writable qemu-nbd holds the image's write lock, as a running QEMU would.
    const vm = await qemuNbd(image, 'qcow2');
    const { archive, cleanup } = await tempArchive({ source: { type: 'qcow2' } });
    try {
      const error = await runBackup(archive, createQcow2Source({ filename: image }), {
        tags: ['a'],
        force: true,
        logger,
      }).catch((e) => e);
      expect(isBackyError(error, 'SOURCE_UNAVAILABLE')).toBe(true);
      expect(error.message).toMatch(
        /^qcow2 image \S+vm\.qcow2 is in use by another process \(is the VM running\?\)/,
      );
      expect(error.message).not.toMatch(/\n/);
      expect((await imageInfo(image)).bitmaps).toEqual([]);
      expect(await archive.revisions()).toEqual([]);
    } finally {
      await vm.stop();
      await cleanup();
      await dir.cleanup();
    }
  });
});
