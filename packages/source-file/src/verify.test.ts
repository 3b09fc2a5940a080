import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archive, runBackup, validateSourceOptions } from '@backy/core';
import type { BackupSource, VerifyContext } from '@backy/core/source';
import { captureLogger, MiB, vmLikeData } from '@backy/core/testing';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fileSource, { createFileSource, type FileSourceOptions, verifyPlan } from './index.js';

const logger = pino({ level: 'silent' });

const validate = (verify: unknown) =>
  validateSourceOptions(fileSource.optionsSchema, { filename: '/x', verify }, 'config').then(
    (options) => options.verify,
    (error: Error) => error.message,
  );

describe('verify option of the file source', () => {
  it('accepts full, changed and budgets, and rejects anything else with one line naming the key', async () => {
    expect(await validate('full')).toEqual({ kind: 'full' });
    expect(await validate('changed')).toEqual({ kind: 'changed' });
    expect(await validate('written')).toEqual({ kind: 'written' });
    expect(await validate('30s')).toEqual({ kind: 'budget', budget: { seconds: 30 }, text: '30s' });
    expect(await validate('5%')).toEqual({ kind: 'budget', budget: { share: 0.05 }, text: '5%' });
    expect(await validate('2m, 10%')).toEqual({
      kind: 'budget',
      budget: { seconds: 120, share: 0.1 },
      text: '2m, 10%',
    });
    expect(await validate(undefined)).toBeUndefined();
    for (const bad of ['fast', '0%', '150%', '5% 6%', 'changed 30s', '', true]) {
      const message = await validate(bad);
      expect(typeof message, `verify: ${JSON.stringify(bad)}`).toBe('string');
      expect(message).toMatch(/^config: source\.verify: /);
      expect(message).not.toContain('\n');
    }
  });

  it('plans the stored chunks first, then a sample of the rest, within a share', () => {
    const hashes = Array.from({ length: 200 }, (_, i) => (i % 50 === 0 ? null : `h${i}`));
    const reader = { chunkCount: hashes.length, chunkHash: (i: number) => hashes[i] ?? null };
    const fresh = new Set(['h3', 'h7', 'h120']);
    const changed = verifyPlan({ kind: 'changed' }, reader, fresh);
    // 3 stored chunks + 1% of the other 197, rounded up.
    expect(changed.order).toHaveLength(5);
    expect(changed.order).toEqual(expect.arrayContaining([3, 7, 120]));
    expect(changed.deadline).toBe(Infinity);
    const share = verifyPlan({ kind: 'budget', budget: { share: 0.01 }, text: '1%' }, reader, fresh);
    expect(share.order).toEqual([3, 7]);
    const tenth = verifyPlan({ kind: 'budget', budget: { share: 0.1 }, text: '10%' }, reader, fresh);
    expect(tenth.order).toHaveLength(20);
    expect(new Set(tenth.order).size).toBe(20);
    expect(tenth.order).toEqual(expect.arrayContaining([3, 7, 120]));
    const timed = verifyPlan({ kind: 'budget', budget: { seconds: 30 }, text: '30s' }, reader, fresh);
    expect(timed.order.slice(0, 3)).toEqual([3, 7, 120]);
    expect(new Set(timed.order).size).toBe(200);
    expect(timed.deadline).toBe(30_000);
    expect(verifyPlan({ kind: 'full' }, reader, fresh).order).toHaveLength(200);
    expect(verifyPlan({ kind: 'written' }, reader, fresh).order).toEqual([3, 7, 120]);
  });
});

describe('verification modes against a real archive', () => {
  let dir: string;
  let filename: string;
  let archive: Archive;
  const size = 64 * MiB + 12_345;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'backy-file-verify-'));
    filename = join(dir, 'disk.img');
    await writeFile(filename, vmLikeData(size));
    archive = await Archive.init(join(dir, 'archive'), { source: { type: 'file' } });
    await runBackup(archive, createFileSource({ filename }), { tags: ['a'], force: true, logger });
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const patch = async (offset: number, text: string) => {
    const handle = await open(filename, 'r+');
    await handle.write(Buffer.from(text), 0, text.length, offset);
    await handle.close();
  };

  /** The file source with `verify`, counting what its verification actually reads and checks. */
  const counted = (verify: FileSourceOptions['verify'], between?: () => Promise<void>) => {
    const inner = createFileSource({ filename, verify });
    const seen = { chunks: 0, bytes: 0 };
    const source: BackupSource = {
      backup: async (ctx) => {
        await inner.backup(ctx);
        await between?.();
      },
      verify: (ctx: VerifyContext) =>
        inner.verify({
          ...ctx,
          checkChunk: (index, data) => {
            seen.chunks++;
            seen.bytes += data.length;
            return ctx.checkChunk(index, data);
          },
        }),
    };
    return { source, seen };
  };

  it('`changed` reads back only what the backup stored and a sample; `full` reads everything', async () => {
    await patch(5 * MiB + 100, 'one changed chunk');
    const changed = counted({ kind: 'changed' });
    const rev = await runBackup(archive, changed.source, { tags: ['b'], force: true, logger });
    const total = rev.verification!.chunks_total;
    expect(total).toBeGreaterThanOrEqual(16);
    expect(rev.stats.chunks_written).toBe(1);
    expect(changed.seen.chunks).toBe(2);
    expect(changed.seen.bytes).toBeLessThanOrEqual(2 * 4 * MiB);
    expect(rev.verification).toMatchObject({
      method: 'partial',
      mode: 'changed',
      chunks_checked: 2,
      ok: true,
    });

    await patch(9 * MiB + 100, 'another changed chunk');
    const full = counted({ kind: 'full' });
    const log = captureLogger();
    const again = await runBackup(archive, full.source, { tags: ['c'], force: true, logger: log.logger });
    expect(full.seen.chunks).toBe(total);
    expect(full.seen.bytes).toBe(size);
    expect(again.verification).toMatchObject({
      method: 'full',
      mode: 'full',
      chunks_checked: total,
      ok: true,
    });
    // How long each half took is in the log, for whoever wonders where a backup's time went.
    const phase = (msg: string) => log.lines.find((line) => line.msg === msg);
    expect(phase('source read and chunks stored')).toMatchObject({ bytes_read: size });
    expect(phase('verification against the source finished')).toMatchObject({
      method: 'full',
      chunks_checked: total,
    });
    for (const msg of ['source read and chunks stored', 'verification against the source finished'])
      expect(phase(msg)?.seconds, msg).toBeGreaterThanOrEqual(0);
  });

  it('by default reads back exactly the chunks the backup stored, and the reused ones not at all', async () => {
    await patch(17 * MiB + 5, 'the default');
    const { source, seen } = counted(undefined);
    const rev = await runBackup(archive, source, { tags: ['f'], force: true, logger });
    expect(rev.stats.chunks_written).toBe(1);
    expect(seen).toEqual({ chunks: 1, bytes: 4 * MiB });
    expect(rev.verification).toMatchObject({
      method: 'partial',
      mode: 'written',
      chunks_checked: 1,
      ok: true,
    });
    // What it did not read back is still in the store: the backup's missing-chunk check looked.
    expect(rev.trust).toBe('trusted');
  });

  it('`changed` catches a stored chunk that differs from the source', async () => {
    await patch(13 * MiB, 'changed before the backup');
    const { source } = counted({ kind: 'changed' }, () => patch(13 * MiB, 'CHANGED under the backup'));
    const rev = await runBackup(archive, source, { tags: ['d'], force: true, logger });
    expect(rev.verification).toMatchObject({ mode: 'changed', ok: false, mismatches: [3] });
    expect(rev.trust).toBe('distrusted');
  });

  it('a percentage budget checks that share of the chunks, stored ones first', async () => {
    await patch(21 * MiB, 'budget');
    const { source, seen } = counted({ kind: 'budget', budget: { share: 0.25 }, text: '25%' });
    const rev = await runBackup(archive, source, { tags: ['e'], force: true, logger });
    const want = Math.ceil(rev.verification!.chunks_total * 0.25);
    expect(seen.chunks).toBe(want);
    expect(rev.verification).toMatchObject({
      method: 'partial',
      mode: '25%',
      chunks_checked: want,
      ok: true,
    });
  });
});
