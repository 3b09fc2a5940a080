import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { chmod, copyFile, type FileHandle, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { chunkBuffers } from '../buffer-pool.js';
import { BackyError, ioError } from '../errors.js';
import { fsyncDir, tempPathFor } from '../fs-util.js';
import { SEALED_FILE_MODE } from '../private-modes.js';
import { chunkHashHex, hashChunk, isAllZero } from '../store/chunk-hash.js';
import type { ChunkMap } from '../store/chunk-map.js';
import { MapReader } from './map-reader.js';
import { MapWriter } from './map-writer.js';

/**
 * The `images` layout: every revision is a plain raw image file `<archive>/<id>` (plus its chunk map of
 * hashes, for verification and block status). A new revision starts as a reflink clone of its parent's
 * file, so on btrfs or XFS it costs only the changed chunks; elsewhere the clone is a sparse full copy.
 */

/** Tries a copy-on-write clone (FICLONE); false where the file system cannot (ext4, tmpfs, across mounts). */
export async function cloneFile(from: string, to: string): Promise<boolean> {
  try {
    await copyFile(from, to, constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (
      code === 'ENOTSUP' ||
      code === 'EOPNOTSUPP' ||
      code === 'EXDEV' ||
      code === 'EINVAL' ||
      code === 'ENOSYS'
    ) {
      await rm(to, { force: true });
      return false;
    }
    throw ioError(error, `cloning ${from}`);
  }
}

/** Whether files in `dir` can be reflinked: clones a small probe file. */
export async function supportsReflink(dir: string): Promise<boolean> {
  const a = tempPathFor(join(dir, 'reflink-probe'));
  const b = tempPathFor(join(dir, 'reflink-probe'));
  try {
    const handle = await open(a, 'wx', 0o600);
    await handle.write(Buffer.alloc(4096, 1));
    await handle.close();
    return await cloneFile(a, b);
  } finally {
    await rm(a, { force: true });
    await rm(b, { force: true });
  }
}

/** Makes a byte range of a file read as zeros without writing them (a hole), via util-linux fallocate(1). */
function punchHole(path: string, offset: number, length: number): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(
      'fallocate',
      ['--punch-hole', '--keep-size', '-o', String(offset), '-l', String(length), path],
      {
        stdio: 'ignore',
      },
    );
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
  });
}

async function writeFully(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

async function readFully(
  handle: FileHandle,
  length: number,
  position: number,
  buffer: Buffer = Buffer.alloc(length),
): Promise<Buffer> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await handle.read(buffer, got, length - got, position + got);
    if (bytesRead === 0) {
      buffer.fill(0, got, length); // past the end reads as zeros, like a sparse tail
      break;
    }
    got += bytesRead;
  }
  return buffer;
}

export interface ImagesWriterOptions {
  /** The parent's chunk map: the new revision starts as a copy of its content. */
  parentMap?: ChunkMap | null;
  /** The parent's image file to clone (or, where reflinks are not possible, to copy sparsely). */
  parentImage?: string | null;
  logger?: Logger;
  /** Writes in flight (default 8). */
  concurrency?: number;
}

/** Writes a revision as an image file: temp file → clone of the parent → changed chunks → fsync → rename. */
export class ImagesRevisionWriter extends MapWriter {
  private readonly tmpPath: string;
  private handle: FileHandle | null = null;
  private readonly holes = new Set<number>();
  /** Hashes of the chunks written by this backup. */
  readonly freshChunks = new Set<string>();
  /** Whether the new file shares the parent's blocks (false: a full copy was made). */
  cloned = false;

  private constructor(
    readonly imagePath: string,
    private readonly options: ImagesWriterOptions,
  ) {
    super(options.parentMap ?? null, undefined, options.concurrency ?? 8);
    if (this.parentMap != null && options.parentImage == null) {
      throw new Error('ImagesRevisionWriter: a parent map needs the parent image file');
    }
    this.tmpPath = tempPathFor(imagePath);
  }

  /** Creates the writer and its temporary image, cloned (or copied) from the parent. */
  static async create(imagePath: string, options: ImagesWriterOptions = {}): Promise<ImagesRevisionWriter> {
    const writer = new ImagesRevisionWriter(imagePath, options);
    try {
      await writer.start();
    } catch (error) {
      await writer.abort();
      throw ioError(error, `preparing image ${imagePath}`);
    }
    return writer;
  }

  private async start(): Promise<void> {
    const { parentImage, logger } = this.options;
    if (this.parentMap != null && parentImage != null) {
      this.cloned = await cloneFile(parentImage, this.tmpPath);
      if (!this.cloned) {
        logger?.warn(
          { archive: dirname(this.imagePath) },
          'the file system cannot reflink: this revision is a full (sparse) copy of its parent',
        );
      }
    }
    this.handle = await open(this.tmpPath, this.cloned ? 'r+' : 'w+', 0o600);
    if (this.cloned) return;
    await this.handle.truncate(this.map.size);
    if (this.parentMap == null || parentImage == null) return;
    // No clone: copy the parent's non-zero chunks, leaving zero chunks as holes.
    const source = await open(parentImage, 'r');
    try {
      for (let index = 0; index < this.parentMap.chunkCount; index++) {
        if (this.parentMap.isZero(index)) continue;
        const position = index * this.map.chunkSize;
        const data = await readFully(source, this.map.chunkLength(index), position);
        await writeFully(this.handle, data, position);
        // Counted as written: without a clone this copy takes real space.
        this.stats.bytesWritten += data.length;
      }
    } finally {
      await source.close();
    }
  }

  protected override async onResize(size: number): Promise<void> {
    await this.handle!.truncate(size);
  }

  protected override onZero(index: number): void {
    // The clone still holds the parent's bytes there unless the chunk was zero already.
    if (this.map.get(index) != null || this.reshaped.has(index)) this.holes.add(index);
  }

  async write(index: number, data: Buffer): Promise<void> {
    this.assertOpen();
    this.checkLength(index, data);
    if (isAllZero(data)) {
      this.zero(index);
      chunkBuffers.release(data);
      return;
    }
    const hash = chunkHashHex(data, this.map.algorithm);
    const unchanged = this.map.get(index) === hash && !this.reshaped.has(index);
    this.reshaped.delete(index);
    this.map.set(index, hash);
    if (unchanged) {
      this.stats.chunksReused++;
      chunkBuffers.release(data);
      return;
    }
    this.freshChunks.add(hash);
    const work = writeFully(this.handle!, data, index * this.map.chunkSize).then(() => {
      this.stats.chunksWritten++;
      this.stats.bytesWritten += data.length;
    });
    await this.enqueue(work, data);
  }

  /** Makes the image durable and read-only under its final name. Returns the map (the archive writes it). */
  async seal(): Promise<ChunkMap> {
    this.assertOpen();
    await this.drain();
    const handle = this.handle!;
    for (const index of this.holes) {
      // Rewritten since, or cut off by a resize: nothing to clear.
      if (index >= this.map.chunkCount || this.map.get(index) != null) continue;
      const offset = index * this.map.chunkSize;
      const length = this.map.chunkLength(index);
      // The clone still holds the parent's bytes there: punch a hole, or write zeros where we cannot.
      if (!(await punchHole(this.tmpPath, offset, length)))
        await writeFully(handle, Buffer.alloc(length), offset);
    }
    for (const index of this.reshaped) {
      const data = await readFully(handle, this.map.chunkLength(index), index * this.map.chunkSize);
      this.map.set(index, isAllZero(data) ? null : chunkHashHex(data, this.map.algorithm));
    }
    await handle.sync();
    await handle.close();
    this.handle = null;
    await chmod(this.tmpPath, SEALED_FILE_MODE);
    await rename(this.tmpPath, this.imagePath);
    await fsyncDir(dirname(this.imagePath));
    this.sealed = true;
    return this.map;
  }

  protected async discard(): Promise<void> {
    await this.handle?.close().catch(() => {});
    this.handle = null;
    await rm(this.tmpPath, { force: true });
  }
}

/** Reads a revision's image file; every chunk is checked against the map's hash. */
export class ImagesRevisionReader extends MapReader {
  constructor(
    readonly imagePath: string,
    map: ChunkMap,
  ) {
    super(map);
  }

  /** Opened on first read and kept until `close`, so a revision deleted meanwhile stays readable. */
  private handle: Promise<FileHandle> | null = null;

  private open(): Promise<FileHandle> {
    this.handle ??= open(this.imagePath, 'r').catch((error) => {
      this.handle = null;
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BackyError('CHUNK_MISSING', `image file ${this.imagePath} is missing`, { cause: error });
      }
      throw ioError(error, `opening ${this.imagePath}`);
    });
    return this.handle;
  }

  async read(index: number): Promise<Buffer> {
    const hash = this.map.get(index);
    const length = this.map.chunkLength(index);
    if (hash == null) return Buffer.alloc(length);
    const handle = await this.open();
    let data: Buffer;
    try {
      data = await readFully(handle, length, index * this.map.chunkSize);
    } catch (error) {
      throw ioError(error, `reading ${this.imagePath}`);
    }
    if ((await hashChunk(data, this.map.algorithm)) !== hash) {
      throw new BackyError(
        'CHUNK_CORRUPT',
        `chunk ${index} of ${this.imagePath} (offset ${index * this.map.chunkSize}) does not match its hash ${hash}`,
      );
    }
    return data;
  }

  async equalsStored(index: number, data: Buffer): Promise<boolean> {
    const length = this.map.chunkLength(index);
    if (data.length !== length) return false;
    const handle = await this.open();
    const stored = chunkBuffers.acquire(length);
    try {
      await readFully(handle, length, index * this.map.chunkSize, stored);
      return stored.equals(data);
    } catch (error) {
      throw ioError(error, `reading ${this.imagePath}`);
    } finally {
      chunkBuffers.release(stored);
    }
  }

  override async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await (await handle?.catch(() => null))?.close();
  }
}
