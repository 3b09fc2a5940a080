/**
 * What the tests of every package share, and the VM-like images of the benchmarks and the demo: size
 * units, a logger that keeps its lines, temporary directories and archives, a source over a buffer, a
 * revision restored into memory, VM-like data. Nothing here imports vitest, so
 * `@backy/core/testing/helpers` loads outside a test run (the benchmarks measure their own memory);
 * `@backy/core/testing` exports all of it too.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import pino, { type Logger } from 'pino';
import { Archive } from '../archive/index.js';
import { restoreToStream } from '../restore.js';
import { forEachChunk } from '../revision-stream.js';
import type { BackupSource } from '../source/contract.js';
import { GiB, KiB, MiB } from '../units.js';

export { sha256Hex } from '../store/chunk-hash.js';
/** The binary size units every package's tests write sizes in (`12.5 * MiB`). */
export { GiB, KiB, MiB };

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface CapturedLog {
  /** Logs at `debug` and above. */
  logger: Logger;
  /** Every line logged so far, parsed. */
  lines: LogLine[];
  /** The same lines as written (`JSON.parse` hides a key that a record repeats: see `duplicateKeys`). */
  raw: string[];
  /** The lines at `warn` level (errors not included). */
  warnings(): LogLine[];
}

/** A pino logger that keeps its lines in memory, parsed; `BACKY_TEST_LOG=1` echoes them to stderr. */
export function captureLogger(): CapturedLog {
  const lines: LogLine[] = [];
  const raw: string[] = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(line: string) {
        raw.push(line);
        lines.push(JSON.parse(line) as LogLine);
        if (process.env.BACKY_TEST_LOG) process.stderr.write(line);
      },
    },
  );
  return { logger, lines, raw, warnings: () => lines.filter((l) => l.level === 40) };
}

/**
 * The keys that occur more than once in one object of a JSON text, as paths (`snapshot`, `err.code`,
 * `list[2].name`). `JSON.parse` keeps the last of them silently; a log record with a key twice (a child
 * logger binding what its parent already bound) reads differently in every tool. Throws on malformed
 * JSON.
 */
export function duplicateKeys(json: string): string[] {
  JSON.parse(json);
  const found: string[] = [];
  let i = 0;
  const space = () => {
    while (i < json.length && ' \t\r\n'.includes(json[i]!)) i++;
  };
  const string = (): string => {
    const start = i++;
    while (json[i] !== '"') i += json[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(json.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    space();
    const c = json[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      const keys = new Set<string>();
      i++;
      space();
      if (json[i] === close) {
        i++;
        return;
      }
      for (let n = 0; ; n++) {
        let at = `${path}[${n}]`;
        if (c === '{') {
          space();
          const key = string();
          at = path === '' ? key : `${path}.${key}`;
          if (keys.has(key)) found.push(at);
          keys.add(key);
          space();
          i++; // the colon
        }
        value(at);
        space();
        if (json[i++] === close) return;
      }
    }
    if (c === '"') string();
    else while (i < json.length && !',]} \t\r\n'.includes(json[i]!)) i++;
  };
  value('');
  return found;
}

export interface TempDir {
  path: string;
  /** Removes the directory and everything in it. */
  cleanup(): Promise<void>;
}

/** A new, empty directory under the system's temporary directory. */
export async function tempDir(prefix = 'backy-test-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/**
 * A minimal source over an in-memory buffer (`getData` is asked at each backup), for tests that must not
 * depend on a source package; `hooks.beforeChunk` runs before each chunk is read.
 */
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

export interface TempArchive {
  /** The temporary directory; the archive is its `archive` subdirectory. */
  dir: string;
  archive: Archive;
  /** Removes the directory with the archive. */
  cleanup(): Promise<void>;
}

/** An archive made with `config` (default: a `test` source) in a new temporary directory. */
export async function tempArchive(
  config: Record<string, unknown> = { source: { type: 'test' } },
  prefix = 'backy-archive-',
): Promise<TempArchive> {
  const dir = await tempDir(prefix);
  try {
    const archive = await Archive.init(join(dir.path, 'archive'), config);
    return { dir: dir.path, archive, cleanup: dir.cleanup };
  } catch (error) {
    await dir.cleanup();
    throw error;
  }
}

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

export type VmRegionKind = 'random' | 'zero' | 'text';

/**
 * What region `index` of a VM-like image holds, in a fixed pattern: 40% incompressible data (like
 * compressed or encrypted files), 30% zeros (unused space), 30% text (logs, configs).
 */
export function vmRegionKind(index: number): VmRegionKind {
  const k = (index * 7) % 10;
  return k < 4 ? 'random' : k < 7 ? 'zero' : 'text';
}

const WORDS = (
  'the quick brown fox jumps over lazy dogs kernel: eth0 link up systemd[1]: Started Daily apt upgrade and clean ' +
  'activities. GET /index.html HTTP/1.1 200 nginx /var/lib/postgresql/15/main user=www-data session opened for user ' +
  'root by (uid=0) CRON[2211]: pam_unix(cron:session): Accepted publickey for deploy from port ssh2 RSA SHA256 ' +
  'error warning notice info debug upstream timed out while reading response header from client request host'
).split(' ');

/** `length` bytes of log-like lines from random words: compresses like real text (~3–5×), unlike a repeated string. */
export function logLikeText(length: number): Buffer {
  const picks = randomBytes(Math.max(1024, Math.ceil(length / 4)));
  const pick = (() => {
    let p = 0;
    return () => picks[p++ % picks.length]!;
  })();
  const two = (n: number) => String(n).padStart(2, '0');
  const parts: string[] = [];
  let total = 0;
  while (total < length) {
    const words: string[] = [];
    const n = 6 + (pick() % 8);
    for (let i = 0; i < n; i++) words.push(WORDS[pick() % WORDS.length]!);
    const line = `2026-11-${two(1 + (pick() % 28))}T${two(pick() % 24)}:${two(pick() % 60)}:${two(pick() % 60)} pid=${pick() * 256 + pick()} ${words.join(' ')}\n`;
    parts.push(line);
    total += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, length);
}

/**
 * The regions of a VM-like image of `size` bytes that hold data, `region` bytes each (the last one
 * shorter); zero regions are left out. Made one at a time, so an image larger than memory can be written.
 */
export function* vmLikeRegions(
  size: number,
  region = 4 * MiB,
): Generator<{ offset: number; kind: 'random' | 'text'; data: Buffer }> {
  for (let offset = 0, index = 0; offset < size; offset += region, index++) {
    const kind = vmRegionKind(index);
    if (kind === 'zero') continue;
    const length = Math.min(region, size - offset);
    yield { offset, kind, data: kind === 'random' ? randomBytes(length) : logLikeText(length) };
  }
}

/** A VM-like image in memory; regions of 1 MiB by default, so that a small image holds every kind. */
export function vmLikeData(size: number, options: { region?: number } = {}): Buffer {
  const data = Buffer.alloc(size);
  for (const { offset, data: bytes } of vmLikeRegions(size, options.region ?? MiB)) bytes.copy(data, offset);
  return data;
}

/** Writes a VM-like disk image file of `size` bytes in 4 MiB regions; its zero regions are holes. */
export async function writeVmImage(path: string, size: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(size);
    for (const { offset, data } of vmLikeRegions(size)) await handle.write(data, 0, data.length, offset);
  } finally {
    await handle.close();
  }
}

/**
 * A large image that is quick to write and to back up: of every sixteen 4 MiB chunks two hold unique
 * log-like text, one random bytes, two one text chunk repeated across the image (deduplicated), the
 * rest zeros (a hole). For measuring memory at sizes where a VM-like image would take too long.
 */
export async function writeSparseImage(path: string, size: number): Promise<void> {
  const region = 4 * MiB;
  const repeated = logLikeText(region);
  const handle = await open(path, 'w');
  try {
    await handle.truncate(size);
    for (let offset = 0, index = 0; offset < size; offset += region, index++) {
      const length = Math.min(region, size - offset);
      const k = index % 16;
      const data =
        k === 0 || k === 8
          ? logLikeText(length)
          : k === 4
            ? randomBytes(length)
            : k === 2 || k === 10
              ? repeated.subarray(0, length)
              : null;
      if (data != null) await handle.write(data, 0, data.length, offset);
    }
  } finally {
    await handle.close();
  }
}

/** Overwrites `count` random 4 KiB blocks in distinct 4 MiB regions of the image with random data. */
export async function changeBlocks(path: string, size: number, count: number): Promise<void> {
  const region = 4 * MiB;
  const handle = await open(path, 'r+');
  try {
    const regions = Math.floor(size / region);
    const chosen = new Set<number>();
    while (chosen.size < Math.min(count, regions)) chosen.add(Math.floor(Math.random() * regions));
    for (const index of chosen) {
      const offset = index * region + Math.floor(Math.random() * (region / 4096)) * 4096;
      await handle.write(randomBytes(4096), 0, 4096, offset);
    }
  } finally {
    await handle.close();
  }
}

/**
 * How many places of `stored` hold a run of `run` bytes (64 by default, at least 16) of the plaintext
 * `image` (its all-zero runs left out): 0 for a store that keeps only ciphertext. Any run of `run`
 * bytes of the image holds a whole aligned block of `run / 2` bytes, so those blocks are looked up
 * (by 30 bits of their first 4 bytes) at every offset of `stored`.
 */
export function plaintextRuns(image: Buffer, stored: Buffer, run = 64): number {
  const block = Math.max(8, Math.floor(run / 2));
  const word = (data: Buffer, at: number) =>
    data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24);
  // An open-addressing table of the blocks by their first 4 bytes (a Map took ~5 s per 8 MiB scanned).
  const count = Math.ceil(image.length / block);
  const bits = Math.max(4, Math.ceil(Math.log2(count * 2 + 1)));
  const mask = (1 << bits) - 1;
  const keys = new Int32Array(1 << bits);
  const offsets = new Int32Array(1 << bits).fill(-1);
  const more = new Map<number, number[]>();
  const slot = (key: number) => Math.imul(key, 0x9e3779b1) >>> (32 - bits);
  for (let at = 0; at + block <= image.length; at += block) {
    if (image.subarray(at, at + block).every((b) => b === 0)) continue;
    const key = word(image, at);
    let h = slot(key);
    while (offsets[h] !== -1 && keys[h] !== key) h = (h + 1) & mask;
    // One slot per distinct key, the other blocks beside it: repeated text would make long clusters.
    if (offsets[h] === -1) {
      keys[h] = key;
      offsets[h] = at;
    } else {
      const list = more.get(h);
      if (list == null) more.set(h, [at]);
      else list.push(at);
    }
  }
  let found = 0;
  for (let i = 0; i + block <= stored.length; i++) {
    const key = word(stored, i);
    let h = slot(key);
    while (offsets[h] !== -1 && keys[h] !== key) h = (h + 1) & mask;
    if (offsets[h] === -1) continue;
    const part = stored.subarray(i, i + block);
    const same = (at: number) => image.subarray(at, at + block).equals(part);
    if (same(offsets[h]!) || more.get(h)?.some(same)) {
      found++;
      i += block - 1;
    }
  }
  return found;
}
