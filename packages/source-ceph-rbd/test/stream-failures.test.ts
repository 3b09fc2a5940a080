/**
 * Broken streams from a real rbd: wrapper scripts run the real `rbd` and damage what export-diff or
 * export write, or make it fail half-way, as a dying OSD connection or a full pipe would.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Archive, isBackyError, runBackup } from '@backy/core';
import { MiB, restoreToBuffer } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRbdSource } from '../src/index.js';
import { Rbd } from '../src/rbd.js';
import { CHUNK, ceph, conf, logger, POOL, rbdArchive, skipReason, uniqueImage } from './helpers.js';

const suite = skipReason ? describe.skip : describe;

/** Replaces the tag of the first data record of an rbd diff v1 stream on stdin with 'X'. */
const CORRUPT_FILTER = `
const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const b = Buffer.concat(chunks);
  let at = 12;
  while (b[at] === 0x66 || b[at] === 0x74 || b[at] === 0x73) at += b[at] === 0x73 ? 9 : 5 + b.readUInt32LE(at + 1);
  b[at] = 0x58;
  process.stdout.write(b);
});
`;

suite('ceph-rbd source with broken rbd streams', () => {
  const image = uniqueImage('broken');
  let dir: string;
  let archive: Archive;
  let tools: string;

  /** A wrapper around rbd: `subcommand` (export-diff or export) runs through `pipeline`, the rest as is. */
  async function wrapper(name: string, subcommand: string, pipeline: string): Promise<string> {
    const path = join(tools, name);
    await writeFile(
      path,
      [
        '#!/bin/bash',
        'for a in "$@"; do [ "$a" = help ] && exec rbd "$@"; done',
        `for a in "$@"; do if [ "$a" = ${subcommand} ]; then ${pipeline}; fi; done`,
        'exec rbd "$@"',
        '',
      ].join('\n'),
    );
    await chmod(path, 0o755);
    return path;
  }

  const backupWith = (rbdBinary?: string) =>
    runBackup(
      archive,
      createRbdSource({ pool: POOL, image, conf, 'full-always': false }, { logger }, { rbdBinary }),
      {
        tags: ['test'],
        force: true,
        logger,
      },
    );

  /** The backup fails with one clear line, leaves no revision and removes its snapshot. */
  async function expectCleanFailure(rbdBinary: string, message: RegExp): Promise<void> {
    const before = await archive.revisions();
    const snapsBefore = await ceph.snapshotNames(image);
    const error = await backupWith(rbdBinary).catch((e) => e);
    expect(isBackyError(error, 'SOURCE_FAILED'), String(error)).toBe(true);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('\n');
    expect((await archive.revisions()).map((r) => r.uuid)).toEqual(before.map((r) => r.uuid));
    expect((await archive.scan()).interrupted).toEqual([]);
    expect(await ceph.snapshotNames(image)).toEqual(snapsBefore);
  }

  beforeAll(async () => {
    ({ dir, archive } = await rbdArchive());
    tools = await mkdtemp(join(tmpdir(), 'backy-rbd-wrappers-'));
    await writeFile(join(tools, 'corrupt.cjs'), CORRUPT_FILTER);
    await ceph.createImage(image, 16 * MiB, [{ offset: 0, data: randomBytes(16 * MiB) }]);
  });

  afterAll(async () => {
    await ceph.removeImage(image);
    if (tools) await rm(tools, { recursive: true, force: true });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('fails when the full rbd export stops short, and when rbd export fails half-way', async () => {
    await expectCleanFailure(
      await wrapper('export-short', 'export', 'rbd "$@" | head -c 5000000; exit 0'),
      /^truncated rbd export stream: got 5000000 of 16777216 bytes$/,
    );
    await expectCleanFailure(
      await wrapper(
        'export-fails',
        'export',
        'rbd "$@" | head -c 5000000; echo "rbd: export error: (5) Input/output error" >&2; exit 5',
      ),
      /^rbd export rbd\/broken-\S+@backy-\S+ - failed \(exit status 5\): rbd: export error: \(5\) Input\/output error$/,
    );
    const good = await backupWith();
    expect(good.source_info?.mode).toBe('full');
  });

  it('fails on a corrupted diff stream', async () => {
    await ceph.writeImage(image, CHUNK + 100, randomBytes(10_000));
    await expectCleanFailure(
      await wrapper('diff-corrupt', 'export-diff', `rbd "$@" | node ${join(tools, 'corrupt.cjs')}; exit 0`),
      /^malformed rbd diff stream at byte \d+: unknown record tag 0x58$/,
    );
  });

  it('fails on a truncated diff stream even when rbd exits 0', async () => {
    await expectCleanFailure(
      await wrapper('diff-short', 'export-diff', 'rbd "$@" | head -c 3000; exit 0'),
      /^truncated rbd diff stream: input ended at byte 3000 inside a data record$/,
    );
  });

  it("reports rbd's own error when rbd fails in the middle of the diff stream", async () => {
    await expectCleanFailure(
      await wrapper(
        'diff-fails',
        'export-diff',
        'rbd "$@" | head -c 3000; echo "rbd: export-diff error: (5) Input/output error" >&2; exit 5',
      ),
      /^rbd export-diff --from-snap backy-\S+ --whole-object rbd\/broken-\S+@backy-\S+ - failed \(exit status 5\): rbd: export-diff error: \(5\) Input\/output error$/,
    );
  });

  it('stops rbd and everything under it when the backup is aborted mid-stream', async () => {
    const before = await archive.revisions();
    const snapsBefore = await ceph.snapshotNames(image);
    const stalling = await wrapper(
      'diff-stalls',
      'export-diff',
      'rbd "$@" | { head -c 3000; sleep 60; }; exit 0',
    );
    const controller = new AbortController();
    const started = Date.now();
    const source = createRbdSource(
      { pool: POOL, image, conf, 'full-always': false },
      { logger },
      { rbdBinary: stalling },
    );
    const pending = runBackup(archive, source, {
      tags: ['test'],
      force: true,
      logger,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 2000);
    const error = await pending.catch((e) => e);
    expect(isBackyError(error, 'ABORTED'), String(error)).toBe(true);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect((await archive.revisions()).map((r) => r.uuid)).toEqual(before.map((r) => r.uuid));
    expect(await ceph.snapshotNames(image)).toEqual(snapsBefore);
  });

  it('gives up on a stream that stalls', async () => {
    const stalling = await wrapper(
      'export-stalls',
      'export',
      'rbd "$@" | { head -c 3000; sleep 60; }; exit 0',
    );
    const [snapshot] = await ceph.snapshotNames(image);
    const client = new Rbd({ binary: stalling, conf, idleTimeoutMs: 1500 });
    const started = Date.now();
    const error = await client
      .export({ pool: POOL, image, snapshot: snapshot! }, async (stdout) => {
        for await (const _ of stdout);
      })
      .catch((e) => e);
    expect(error.message).toMatch(/^rbd export rbd\/broken-\S+@backy-\S+ -: no data for 1\.5 s$/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('fails when rbd cannot be run at all', async () => {
    const error = await backupWith(join(tools, 'no-such-rbd')).catch((e) => e);
    expect(isBackyError(error, 'SOURCE_UNAVAILABLE')).toBe(true);
    expect(error.message).toMatch(/no-such-rbd not found \(is ceph-common installed\?\)$/);
  });

  it('makes a correct incremental backup after all these failures', async () => {
    const rev = await backupWith();
    expect(rev.source_info?.mode).toBe('diff');
    expect(rev.verification?.ok).toBe(true);
    const restored = await restoreToBuffer(archive, rev.uuid);
    expect(restored.equals(await ceph.exportImage(`${image}@backy-${rev.uuid}`))).toBe(true);
  });
});
