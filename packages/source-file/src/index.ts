import { type FileHandle, open } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  type BackupContext,
  BackyError,
  blockDeviceSize,
  defineSource,
  forEachChunk,
  type VerificationResult,
  type VerifyContext,
} from '@backy/core/source';
import { z } from 'zod';

export const fileSourceOptions = z.strictObject({
  /** Path of the image file or block device to back up. */
  filename: z.string().min(1),
  /** Accepted for configs written for backy 2.x; copy-on-write is a matter of the archive's layout here. */
  cow: z.boolean().optional(),
});
export type FileSourceOptions = z.infer<typeof fileSourceOptions>;

/** Parallel reads in flight; the writer bounds hashing/compression separately. */
const READ_CONCURRENCY = 4;

async function openSource(filename: string): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(filename, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? String(error));
    throw new BackyError('SOURCE_UNAVAILABLE', `source file ${filename}: ${why}`, { cause: error });
  }
  try {
    const info = await handle.stat();
    if (info.isBlockDevice()) return { handle, size: await blockDeviceSize(info.rdev) };
    if (!info.isFile())
      throw new BackyError(
        'SOURCE_UNAVAILABLE',
        `source file ${filename}: not a regular file or block device`,
      );
    return { handle, size: info.size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Reads exactly `length` bytes at `offset`; a short read means the source shrank under us. */
async function readFully(
  handle: FileHandle,
  filename: string,
  offset: number,
  buffer: Buffer,
): Promise<Buffer> {
  const length = buffer.length;
  let got = 0;
  while (got < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(buffer, got, length - got, offset + got));
    } catch (error) {
      throw new BackyError(
        'SOURCE_FAILED',
        `source file ${filename}: read error at offset ${offset + got}: ${(error as NodeJS.ErrnoException).code ?? error}`,
        { cause: error },
      );
    }
    if (bytesRead === 0)
      throw new BackyError(
        'SOURCE_FAILED',
        `source file ${filename}: ended at offset ${offset + got} (did it shrink during the backup?)`,
      );
    got += bytesRead;
  }
  return buffer;
}

export function createFileSource(options: FileSourceOptions) {
  const filename = resolve(options.filename);
  return {
    async backup(ctx: BackupContext): Promise<void> {
      const { handle, size } = await openSource(filename);
      try {
        await ctx.writer.resize(size);
        const { writer } = ctx;
        let done = 0;
        ctx.logger.info({ filename, size }, 'reading source file');
        await forEachChunk(
          writer.chunkCount,
          READ_CONCURRENCY,
          async (index) => {
            const length = writer.chunkLength(index);
            const data = await readFully(handle, filename, index * writer.chunkSize, writer.allocate(length));
            ctx.reportRead(length);
            await writer.write(index, data);
            done += length;
            ctx.progress(done, size);
          },
          ctx.signal,
        );
        const after = await handle.stat();
        if (after.isFile() && after.size !== size) {
          throw new BackyError(
            'SOURCE_FAILED',
            `source file ${filename} changed size during the backup (${size} → ${after.size})`,
          );
        }
      } finally {
        await handle.close();
      }
    },

    /**
     * Full verification: every chunk of the source is read again and compared with the revision
     * (`ctx.checkChunk`: byte for byte against what this backup stored, by SHA-256 otherwise).
     */
    async verify(ctx: VerifyContext): Promise<VerificationResult> {
      const { reader } = ctx;
      const { handle, size } = await openSource(filename);
      const mismatches: number[] = [];
      let done = 0;
      try {
        if (size !== reader.size) {
          ctx.logger.error({ source: size, revision: reader.size }, 'source size differs from the revision');
          return {
            method: 'full',
            chunks_checked: 0,
            chunks_total: reader.chunkCount,
            ok: false,
            mismatches: [],
          };
        }
        await forEachChunk(
          reader.chunkCount,
          READ_CONCURRENCY,
          async (index) => {
            const length = reader.chunkLength(index);
            const data = await readFully(handle, filename, index * reader.chunkSize, ctx.allocate(length));
            try {
              if (!(await ctx.checkChunk(index, data))) mismatches.push(index);
            } finally {
              ctx.release(data);
            }
            done += length;
            ctx.progress(done, size);
          },
          ctx.signal,
        );
      } finally {
        await handle.close();
      }
      mismatches.sort((a, b) => a - b);
      return {
        method: 'full',
        chunks_checked: reader.chunkCount,
        chunks_total: reader.chunkCount,
        ok: mismatches.length === 0,
        mismatches,
      };
    },
  };
}

export default defineSource({
  type: 'file',
  optionsSchema: fileSourceOptions,
  create: (options) => createFileSource(options),
  parseInitArgument: (argument) => ({ filename: resolve(argument) }),
  describe: (options) => options.filename,
  async checkInit(options) {
    try {
      const { handle } = await openSource(options.filename);
      await handle.close();
      return [];
    } catch (error) {
      return [(error as Error).message];
    }
  },
});
