import { type FileHandle, open } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  type BackupContext,
  BackyError,
  blockDeviceSize,
  DEFAULT_SAMPLE_SHARE,
  defineSource,
  forEachChunk,
  type RevisionReader,
  sampleIndexes,
  type VerificationResult,
  type VerifyContext,
} from '@backy/core/source';
import { type FileSourceOptions, fileSourceOptions, type VerifyMode } from './options.js';

export type { FileSourceOptions, VerifyMode } from './options.js';

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

const modeName = (mode: VerifyMode): string => (mode.kind === 'budget' ? mode.text : mode.kind);

/**
 * Which chunks a verification reads, in which order, and for how long (ms). The chunks this backup
 * stored come first (they check what was just written); reading in ascending order keeps it sequential
 * wherever the set is fixed in advance.
 */
export function verifyPlan(
  mode: VerifyMode,
  reader: Pick<RevisionReader, 'chunkCount' | 'chunkHash'>,
  freshChunks: ReadonlySet<string>,
  random: () => number = Math.random,
): { order: number[]; deadline: number } {
  const all = reader.chunkCount;
  if (mode.kind === 'full') return { order: Array.from({ length: all }, (_, i) => i), deadline: Infinity };
  const fresh: number[] = [];
  const rest: number[] = [];
  for (let index = 0; index < all; index++) {
    const hash = reader.chunkHash(index);
    (hash != null && freshChunks.has(hash) ? fresh : rest).push(index);
  }
  if (mode.kind === 'written') return { order: fresh, deadline: Infinity };
  if (mode.kind === 'changed') {
    const sample = sampleIndexes(rest.length, Math.ceil(rest.length * DEFAULT_SAMPLE_SHARE), random);
    const order = [...fresh, ...sample.map((i) => rest[i]!)].sort((a, b) => a - b);
    return { order, deadline: Infinity };
  }
  const { seconds, share } = mode.budget;
  const count = share == null ? all : Math.max(1, Math.ceil(all * share));
  const others = sampleIndexes(rest.length, Math.max(0, count - fresh.length), random).map((i) => rest[i]!);
  if (seconds == null)
    return { order: [...fresh, ...others].slice(0, count).sort((a, b) => a - b), deadline: Infinity };
  // A time limit may stop anywhere: the others in random order, so that what is checked is a fair sample.
  for (let i = others.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [others[i], others[j]] = [others[j]!, others[i]!];
  }
  return { order: [...fresh, ...others].slice(0, count), deadline: seconds * 1000 };
}

/**
 * A backup reads back what it wrote and compares it with the source; reused chunks are checked to exist
 * (the backup's missing-chunk check), not re-read. Re-reading every reused chunk (`full`, the default
 * before) made an incremental of a 4 GiB image cost 0.96x a full copy instead of 0.33x (issue 30).
 */
const DEFAULT_VERIFY: VerifyMode = { kind: 'written' };

export function createFileSource(options: FileSourceOptions) {
  const filename = resolve(options.filename);
  const mode: VerifyMode = options.verify ?? DEFAULT_VERIFY;
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
     * Reads chunks of the source again and compares them with the revision (`ctx.checkChunk`: byte for
     * byte against what this backup stored, by SHA-256 otherwise): all of them, or as `verify` says.
     */
    async verify(ctx: VerifyContext): Promise<VerificationResult> {
      const { reader } = ctx;
      const started = Date.now();
      const { handle, size } = await openSource(filename);
      const mismatches: number[] = [];
      const plan = verifyPlan(mode, reader, ctx.freshChunks);
      let checked = 0;
      let done = 0;
      try {
        if (size !== reader.size) {
          ctx.logger.error({ source: size, revision: reader.size }, 'source size differs from the revision');
          return {
            method: 'full',
            mode: modeName(mode),
            chunks_checked: 0,
            chunks_total: reader.chunkCount,
            ok: false,
            mismatches: [],
          };
        }
        const { order, deadline } = plan;
        const total = plan.order.reduce((sum, index) => sum + reader.chunkLength(index), 0);
        await forEachChunk(
          order.length,
          READ_CONCURRENCY,
          async (at) => {
            if (checked > 0 && Date.now() - started > deadline) return;
            const index = order[at]!;
            const length = reader.chunkLength(index);
            const data = await readFully(handle, filename, index * reader.chunkSize, ctx.allocate(length));
            try {
              if (!(await ctx.checkChunk(index, data))) mismatches.push(index);
            } finally {
              ctx.release(data);
            }
            checked++;
            done += length;
            ctx.progress(done, total);
          },
          ctx.signal,
        );
      } finally {
        await handle.close();
      }
      mismatches.sort((a, b) => a - b);
      const result: VerificationResult = {
        method: checked === reader.chunkCount ? 'full' : 'partial',
        mode: modeName(mode),
        chunks_checked: checked,
        chunks_total: reader.chunkCount,
        ok: mismatches.length === 0,
        mismatches,
      };
      if (mode.kind !== 'full')
        ctx.logger.info(
          { ...result, mismatches: mismatches.slice(0, 20), seconds: (Date.now() - started) / 1000 },
          'verified against the source file',
        );
      return result;
    },
  };
}

export default defineSource<FileSourceOptions>({
  type: 'file',
  optionsSchema: fileSourceOptions,
  create: (options) => createFileSource(options),
  parseInitArgument: (argument) => ({ filename: resolve(argument) }),
  describe: (options) => options.filename,
  paths: ['filename'],
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
