// Helpers for core's own tests (not exported).
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import pino from 'pino';
import { Archive } from './archive.js';
import { restoreToStream } from './restore.js';
import { forEachChunk } from './revision-stream.js';
import type { BackupSource } from './source/contract.js';

export const silent = pino({ level: 'silent' });
export const MiB = 1024 * 1024;

export async function tempDir(
  prefix = 'backy-core-',
): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

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

/** The image of revision `spec`, restored into memory; the reader (and its store lock) is closed after. */
export async function restoreToBuffer(archive: Archive, spec: string): Promise<Buffer> {
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (d) => parts.push(d));
  const reader = await archive.openReader(await archive.resolveOne(spec));
  try {
    await restoreToStream(reader, out);
  } finally {
    await reader.close();
  }
  return Buffer.concat(parts);
}
