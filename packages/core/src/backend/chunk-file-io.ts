import { constants } from 'node:fs';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { chunkBuffers, DIRECT_IO_ALIGN } from '../buffer-pool.js';
import { CHUNK_FILE_HEADER_BYTES, MAX_CHUNK_FILE_BYTES as MAX_FILE_BYTES } from '../format/chunk-file.js';
import { SEALED_FILE_MODE } from '../private-modes.js';

/**
 * Where a chunk file goes in its pool slot: shifted so that the payload after the header starts on an
 * aligned address, and a raw chunk can be written from there with O_DIRECT (see restore.ts).
 */
const FILE_OFFSET = DIRECT_IO_ALIGN - CHUNK_FILE_HEADER_BYTES;
const DIRECT_CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT;

/**
 * Writes new chunk files and makes them durable, with O_DIRECT while the file system takes it: the
 * write is padded to the alignment from the (aligned, pooled) buffer and the file cut back to its
 * length. That keeps chunk files out of the page cache (a backup writes far more than anyone reads
 * back soon) and spares copying them into it, measured as the largest kernel cost of a full backup.
 */
export class ChunkFileWriter {
  /** Whether to try O_DIRECT; turned off by the first EINVAL. */
  private directIo = true;

  async write(path: string, file: Buffer): Promise<void> {
    const padded = Math.ceil(file.length / DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
    if (
      this.directIo &&
      padded <= chunkBuffers.slotBytes &&
      chunkBuffers.isDirectIoAligned(file.subarray(0, 0))
    ) {
      const whole = Buffer.from(file.buffer, file.byteOffset, padded);
      const handle = await open(path, DIRECT_CREATE, SEALED_FILE_MODE).catch(
        (error: NodeJS.ErrnoException) => {
          if (error.code !== 'EINVAL') throw error;
          this.directIo = false; // no O_DIRECT on this file system
          return null;
        },
      );
      if (handle != null) {
        try {
          await handle.write(whole, 0, padded, 0);
          await handle.truncate(file.length);
          await handle.sync();
          return;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
          this.directIo = false; // the device wants a larger alignment
          await rm(path, { force: true });
        } finally {
          await handle.close();
        }
      }
    }
    const handle = await open(path, 'wx', SEALED_FILE_MODE);
    try {
      await handle.write(file, 0, file.length, 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

/**
 * Reads a whole chunk file (at most a chunk file's largest size) with one read call (readFile reads in
 * 512 KiB steps, each a separate trip through the thread pool); larger files fall back to readFile.
 * `direct` reads it with O_DIRECT where possible, past the page cache. The result is pooled when it fits.
 */
export async function readChunkFile(path: string, direct = false): Promise<Buffer> {
  if (direct) {
    const handle = await open(path, constants.O_RDONLY | constants.O_DIRECT).catch(() => null);
    if (handle != null) {
      try {
        const file = await readInto(handle, chunkBuffers.acquire(chunkBuffers.slotBytes), MAX_FILE_BYTES);
        if (file != null) return file;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
      } finally {
        await handle.close();
      }
    }
  }
  const handle = await open(path, 'r');
  try {
    const buffer = chunkBuffers.acquire(FILE_OFFSET + MAX_FILE_BYTES + 1).subarray(FILE_OFFSET);
    return (await readInto(handle, buffer, MAX_FILE_BYTES)) ?? (await handle.readFile());
  } finally {
    await handle.close();
  }
}

/**
 * Reads the whole file into `buffer`; null (and `buffer` released) if it holds more than `max` bytes.
 * One read normally does it; a short read is the end of the file.
 */
async function readInto(handle: FileHandle, buffer: Buffer, max: number): Promise<Buffer | null> {
  let length = 0;
  try {
    while (length < buffer.length) {
      const wanted = buffer.length - length;
      const { bytesRead } = await handle.read(buffer, length, wanted, length);
      length += bytesRead;
      if (bytesRead < wanted) break;
    }
  } catch (error) {
    chunkBuffers.release(buffer);
    throw error;
  }
  if (length <= max) return buffer.subarray(0, length);
  chunkBuffers.release(buffer);
  return null;
}
