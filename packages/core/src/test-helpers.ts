// Helpers for core's own tests (not exported); what other packages' tests share is in testing/helpers.ts.
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { Archive } from './archive/index.js';
import { forEachChunk } from './revision-stream.js';
import type { BackupSource } from './source/contract.js';

export const silent = pino({ level: 'silent' });
export const MiB = 1024 * 1024;

/** A minimal source over an in-memory buffer, for core tests that must not depend on a source package. */
export function bufferSource(
  getData: () => Buffer,
  hooks: { beforeChunk?: (index: number) => Promise<void> } = {},
): BackupSource {
  return {
    async backup(ctx) {
      const data = getData();
      await ctx.writer.resize(data.length);
      await forEachChunk(
        ctx.writer.chunkCount,
        2,
        async (index) => {
          await hooks.beforeChunk?.(index);
          const start = index * ctx.writer.chunkSize;
          const chunk = Buffer.from(data.subarray(start, start + ctx.writer.chunkLength(index)));
          ctx.reportRead(chunk.length);
          await ctx.writer.write(index, chunk);
        },
        ctx.signal,
      );
    },
    async verify(ctx) {
      return {
        method: 'none',
        chunks_checked: 0,
        chunks_total: ctx.reader.chunkCount,
        ok: true,
        mismatches: [],
      };
    },
  };
}

export async function makeArchive(dir: string, extra: Record<string, unknown> = {}): Promise<Archive> {
  return Archive.init(join(dir, 'archive'), { source: { type: 'test' }, ...extra });
}

export async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  const handle = await open(path, 'r+');
  await handle.write(data, 0, data.length, offset);
  await handle.close();
}

export { writeFile };
