/**
 * backy-source-example: backs up one image file. A complete source in one file; see
 * docs/writing-a-source.md in the backy repository for what each part is for.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { BackupContext, BackupSource, VerificationResult, VerifyContext } from '@backy/core/source';
import { BackyError, defineSource, forEachChunk } from '@backy/core/source';
import { z } from 'zod';

/** The `source:` section of an archive's config, without `type`. Strict: a typo is an error. */
export const optionsSchema = z.strictObject({
  /** The image to back up. */
  path: z.string().min(1),
  /** Chunks read at once (default 4). */
  parallel: z.number().int().min(1).max(64).default(4),
});
export type ExampleOptions = z.infer<typeof optionsSchema>;

async function openImage(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (error) {
    // SOURCE_UNAVAILABLE: the backup did not start; the scheduler retries later.
    throw new BackyError('SOURCE_UNAVAILABLE', `image ${path}: ${(error as NodeJS.ErrnoException).code}`, {
      cause: error,
    });
  }
}

/** Reads `buffer.length` bytes at `offset`; a short read means the image shrank under us. */
async function readChunk(handle: FileHandle, path: string, offset: number, buffer: Buffer): Promise<Buffer> {
  let got = 0;
  while (got < buffer.length) {
    const { bytesRead } = await handle.read(buffer, got, buffer.length - got, offset + got);
    // SOURCE_FAILED: the backup failed half-way; nothing of it becomes a revision.
    if (bytesRead === 0) throw new BackyError('SOURCE_FAILED', `image ${path} ended at ${offset + got}`);
    got += bytesRead;
  }
  return buffer;
}

export function createExampleSource(options: ExampleOptions): BackupSource {
  const path = resolve(options.path);
  return {
    async backup(ctx: BackupContext): Promise<void> {
      const handle = await openImage(path);
      try {
        const size = (await handle.stat()).size;
        // Resize first: chunkCount and chunkLength follow the size, the last chunk may be short.
        await ctx.writer.resize(size);
        const { writer } = ctx;
        let done = 0;
        await forEachChunk(
          writer.chunkCount,
          options.parallel,
          async (index) => {
            const length = writer.chunkLength(index);
            const data = await readChunk(handle, path, index * writer.chunkSize, writer.allocate(length));
            ctx.reportRead(length);
            await writer.write(index, data); // awaits back-pressure; the writer owns `data` now
            done += length;
            ctx.progress(done, size);
          },
          ctx.signal, // an abort stops handing out chunks
        );
      } finally {
        await handle.close();
      }
    },

    async verify(ctx: VerifyContext): Promise<VerificationResult> {
      const { reader } = ctx;
      const handle = await openImage(path);
      const mismatches: number[] = [];
      try {
        if ((await handle.stat()).size !== reader.size)
          return {
            method: 'full',
            chunks_checked: 0,
            chunks_total: reader.chunkCount,
            ok: false,
            mismatches,
          };
        await forEachChunk(
          reader.chunkCount,
          options.parallel,
          async (index) => {
            const buffer = ctx.allocate(reader.chunkLength(index));
            try {
              await readChunk(handle, path, index * reader.chunkSize, buffer);
              if (!(await ctx.checkChunk(index, buffer))) mismatches.push(index);
            } finally {
              ctx.release(buffer);
            }
          },
          ctx.signal,
        );
      } finally {
        await handle.close();
      }
      const total = reader.chunkCount;
      return {
        method: 'full',
        chunks_checked: total,
        chunks_total: total,
        ok: mismatches.length === 0,
        mismatches,
      };
    },
  };
}

export default defineSource({
  type: 'backy-source-example', // the package name: what a config's `source.type` says
  optionsSchema,
  create: (options) => createExampleSource(options),
  parseInitArgument: (argument) => ({ path: resolve(argument) }), // `backy init backy-source-example IMAGE`
  describe: (options) => options.path,
});
