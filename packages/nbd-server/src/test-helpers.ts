/** Fixtures for the NBD tests: archives built through the real backup path from inline image data. */
import { execFile } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import { Archive, type BackupSource, type Revision, runBackup } from '@backy/core';
import { MiB } from '@backy/core/testing/helpers';
import { pino } from 'pino';

export const CHUNK = 4 * MiB;

/** Deterministic pseudo-random bytes (xorshift), so failures are reproducible. */
export function pseudoRandom(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  for (let i = length - (length % 4); i < length; i++) b[i] = i & 0xff;
  return b;
}

/** A source that reads an image file chunk by chunk, like the file source, without depending on it (no verify). */
export function imageFileSource(path: string): BackupSource {
  return {
    async backup(ctx) {
      const handle = await open(path, 'r');
      try {
        const size = (await handle.stat()).size;
        await ctx.writer.resize(size);
        for (let i = 0; i < ctx.writer.chunkCount; i++) {
          const data = Buffer.alloc(ctx.writer.chunkLength(i));
          await handle.read(data, 0, data.length, i * ctx.writer.chunkSize);
          ctx.reportRead(data.length);
          await ctx.writer.write(i, data);
        }
      } finally {
        await handle.close();
      }
    },
  };
}

export async function backupImage(archive: Archive, image: string, tags: string[]): Promise<Revision> {
  return runBackup(archive, imageFileSource(image), { tags, force: true, logger: pino({ level: 'silent' }) });
}

export async function makeArchive(dir: string): Promise<Archive> {
  return Archive.init(dir, { source: { type: 'file', filename: '/dev/null' } });
}

/**
 * A VM-like image: random chunks, a zero chunk, a duplicate chunk, a half-zero chunk and a short last
 * chunk (size a multiple of 512 as qemu likes).
 */
export function vmLikeImage(variant: 1 | 2): Buffer {
  const parts = [
    pseudoRandom(CHUNK, 1),
    Buffer.alloc(CHUNK),
    pseudoRandom(CHUNK, 1),
    Buffer.concat([pseudoRandom(CHUNK / 2, 3), Buffer.alloc(CHUNK / 2)]),
    Buffer.alloc(CHUNK),
    pseudoRandom(CHUNK, 5),
    pseudoRandom(1536, 6),
  ];
  if (variant === 2) {
    parts[4] = pseudoRandom(CHUNK, 7);
    pseudoRandom(1024, 8).copy(parts[1]!, 100);
  }
  return Buffer.concat(parts);
}

export async function writeImage(path: string, data: Buffer): Promise<void> {
  await writeFile(path, data);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program; never rejects on a non-zero exit (the test looks at `code`). */
export function run(
  cmd: string,
  args: string[],
  options: { timeout?: number; input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { timeout: options.timeout ?? 60_000, maxBuffer: 64 * MiB, encoding: 'utf8', env: options.env },
      (error, stdout, stderr) => {
        if (error && typeof (error as NodeJS.ErrnoException).code === 'string') {
          reject(error);
          return;
        }
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
    if (options.input != null) child.stdin?.end(options.input);
  });
}
