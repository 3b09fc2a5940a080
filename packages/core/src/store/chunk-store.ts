import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { BackyError, ioError, isBackyError } from '../errors.js';
import { exists, fsyncDir, isTempName, tempPathFor, writeFileAtomic } from '../fs-util.js';
import { acquireLock, type Lock, type LockMode } from '../lock.js';
import { chunkBuffers, DIRECT_IO_ALIGN } from './buffer-pool.js';
import { CHUNK_HASH, type HashAlgorithm, hashChunk } from './chunk-map.js';
import { chunkWorkers } from './chunk-workers.js';
import { type Codec, type CodecName, codecById, codecByName } from './codec.js';

const MAGIC = Buffer.from('BKC1');
const HEADER_BYTES = 12;
const HASH_RE = /^[0-9a-f]{64}$/;
const DAMAGED_SUFFIX = '.damaged';
/** Sample slices (bytes) probed before compressing a whole chunk; incompressible chunks are stored raw. */
const PROBE_SLICE = 16 * 1024;
const PROBE_RATIO = 0.9;
const KEEP_RAW_RATIO = 0.97;

export interface ChunkStoreOptions {
  /** Codec for new chunks (default zstd). Existing chunks record their own codec. */
  codec?: CodecName;
}

export interface PutResult {
  /** Bytes written to disk (0 when the chunk already existed). */
  written: number;
}

/**
 * A content-addressed store of chunks: `<root>/ab/<hash>` (see `HashAlgorithm`) (root is an archive's `chunks/` or a shared
 * directory), each file a 12-byte header (magic, codec, raw length) and the (possibly compressed)
 * payload. Every read is checked against the hash. The store keeps a registry of the archives using it
 * (`<root>/.archives/`) for purge, and `<root>/.purge.lock`.
 */
/**
 * Where a chunk file goes in its pool slot: shifted so that the payload after the header starts on an
 * aligned address, and a raw chunk can be written from there with O_DIRECT (see restore.ts).
 */
const FILE_OFFSET = DIRECT_IO_ALIGN - HEADER_BYTES;
const DIRECT_CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT;

/**
 * Reads a chunk file expected to hold at most `max` bytes with one read call (readFile reads in 512 KiB
 * steps, each a separate trip through the thread pool); larger files fall back to readFile.
 */
async function readWhole(path: string, max: number, direct = false): Promise<Buffer> {
  if (direct) {
    const handle = await open(path, constants.O_RDONLY | constants.O_DIRECT).catch(() => null);
    if (handle != null) {
      try {
        const file = await readInto(handle, chunkBuffers.acquire(chunkBuffers.slotBytes), max);
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
    const buffer = chunkBuffers.acquire(FILE_OFFSET + max + 1).subarray(FILE_OFFSET);
    return (await readInto(handle, buffer, max)) ?? (await handle.readFile());
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

export interface ReadOptions {
  /**
   * Read the chunk file with O_DIRECT where possible, past the page cache: for streaming every chunk
   * once (restore, verify), which would otherwise evict what the server has cached.
   */
  bypassCache?: boolean;
}

interface ChunkFile {
  /** The whole file (pooled when it fits a pool slot). */
  file: Buffer;
  codec: Codec;
  rawLength: number;
  payload: Buffer;
}

const corruptChunk = (hash: string, why: string, cause?: unknown) =>
  new BackyError('CHUNK_CORRUPT', `chunk ${hash} is damaged: ${why}`, { cause });

export class ChunkStore {
  readonly root: string;
  readonly codec: Codec;
  /** Largest chunk file: header plus a raw 4 MiB chunk (compressed ones are smaller). */
  private readonly maxChunkFile = HEADER_BYTES + 4 * 1024 * 1024;
  private readonly dirtyDirs = new Set<string>();
  private readonly inflight = new Map<string, Promise<PutResult>>();
  private readonly knownDirs = new Set<string>();
  /** Whether to try O_DIRECT for chunk files; turned off by the first EINVAL. */
  private directIo = true;

  constructor(root: string, options: ChunkStoreOptions = {}) {
    this.root = resolve(root);
    this.codec = codecByName(options.codec ?? 'zstd');
  }

  get chunksDir(): string {
    return this.root;
  }

  get purgeLockPath(): string {
    return join(this.root, '.purge.lock');
  }

  private get registryDir(): string {
    return join(this.root, '.archives');
  }

  pathOf(hash: string): string {
    return join(this.chunksDir, hash.slice(0, 2), hash);
  }

  async init(): Promise<void> {
    try {
      await mkdir(this.registryDir, { recursive: true });
    } catch (error) {
      throw ioError(error, `creating chunk store ${this.root}`);
    }
  }

  /** Shared for backup/restore/verify, exclusive for purge. */
  lock(mode: LockMode, waitSeconds = 0): Promise<Lock> {
    return acquireLock(this.purgeLockPath, mode, {
      waitSeconds,
      busyMessage:
        mode === 'exclusive'
          ? `chunk store ${this.root} is in use by a backup, restore or verify; purge later`
          : `chunk store ${this.root} is being purged; try again when purge has finished`,
    });
  }

  async has(hash: string): Promise<boolean> {
    try {
      await stat(this.pathOf(hash));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Stores `data` under `hash` unless it is already there. With `rewrite`, an existing file is replaced
   * (used while the newest revision is distrusted, so damaged chunks get healed).
   */
  put(hash: string, data: Buffer, options: { rewrite?: boolean } = {}): Promise<PutResult> {
    const running = this.inflight.get(hash);
    if (running) return running.then(() => ({ written: 0 }));
    const promise = this.putNew(hash, data, options.rewrite ?? false).finally(() =>
      this.inflight.delete(hash),
    );
    this.inflight.set(hash, promise);
    return promise;
  }

  private async putNew(hash: string, data: Buffer, rewrite: boolean): Promise<PutResult> {
    const path = this.pathOf(hash);
    if (!rewrite && (await this.has(hash))) return { written: 0 };
    const dir = join(this.chunksDir, hash.slice(0, 2));
    if (!this.knownDirs.has(dir)) {
      await mkdir(dir, { recursive: true }).catch((e) => {
        throw ioError(e, `creating ${dir}`);
      });
      this.knownDirs.add(dir);
    }
    const file = await this.encode(data);
    const tmp = tempPathFor(path);
    try {
      await this.writeChunkFile(tmp, file);
      await rename(tmp, path);
    } catch (error) {
      await rm(tmp, { force: true }).catch(() => {});
      throw ioError(error, `writing chunk ${hash}`);
    } finally {
      chunkBuffers.release(file);
    }
    this.dirtyDirs.add(dir);
    return { written: file.length };
  }

  /**
   * Writes a new chunk file and makes it durable. With O_DIRECT where the file system has it: the
   * write is padded to the alignment from the (aligned, pooled) buffer and the file cut back to its
   * length. That keeps chunk files out of the page cache (a backup writes far more than anyone reads
   * back soon) and spares copying them into it, measured as the largest kernel cost of a full backup.
   */
  private async writeChunkFile(path: string, file: Buffer): Promise<void> {
    const padded = Math.ceil(file.length / DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
    if (
      this.directIo &&
      padded <= chunkBuffers.slotBytes &&
      chunkBuffers.isDirectIoAligned(file.subarray(0, 0))
    ) {
      const whole = Buffer.from(file.buffer, file.byteOffset, padded);
      const handle = await open(path, DIRECT_CREATE, 0o444).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EINVAL') throw error;
        this.directIo = false; // no O_DIRECT on this file system
        return null;
      });
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
    const handle = await open(path, 'wx', 0o444);
    try {
      await handle.write(file, 0, file.length, 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /**
   * The chunk file's content in one pooled buffer (release it when written): the header, then the
   * payload, compressed straight into the buffer or, for incompressible data, copied there raw.
   */
  private async encode(data: Buffer): Promise<Buffer> {
    const file = chunkBuffers.acquire(HEADER_BYTES + data.length);
    MAGIC.copy(file);
    file.fill(0, 4, 8);
    file.writeUInt32LE(data.length, 8);
    const raw = () => {
      file.writeUInt8(0, 4);
      data.copy(file, HEADER_BYTES);
      return file;
    };
    if (this.codec.name === 'none') return raw();
    if (data.length > 4 * PROBE_SLICE) {
      const mid = Math.floor(data.length / 2);
      const probe = Buffer.concat([
        data.subarray(0, PROBE_SLICE),
        data.subarray(mid, mid + PROBE_SLICE),
        data.subarray(data.length - PROBE_SLICE),
      ]);
      if (this.codec.compressSync(probe).length > probe.length * PROBE_RATIO) return raw();
    }
    // Room for what is worth keeping: a chunk that compresses worse than KEEP_RAW_RATIO is stored raw.
    const room = file.subarray(HEADER_BYTES, HEADER_BYTES + Math.floor(data.length * KEEP_RAW_RATIO));
    const length = await this.codec.compressInto(data, room);
    if (length < 0) return raw();
    file.writeUInt8(this.codec.id, 4);
    return file.subarray(0, HEADER_BYTES + length);
  }

  /** Makes every chunk written so far durable in its directory. Call before committing a map. */
  async flush(): Promise<void> {
    const dirs = [...this.dirtyDirs];
    this.dirtyDirs.clear();
    await Promise.all(dirs.map((d) => fsyncDir(d)));
  }

  /** Reads, decompresses and verifies a chunk against its name, a hash by `algorithm`. */
  async get(hash: string, algorithm: HashAlgorithm = CHUNK_HASH): Promise<Buffer> {
    const data = await this.getPooled(hash, algorithm);
    // Give the caller its own copy so the pooled buffer goes back to the pool (shared memory is
    // invisible to the garbage collector's accounting and would pile up).
    const copy = Buffer.from(data);
    chunkBuffers.release(data);
    return copy;
  }

  /**
   * Like `get`, but the result may be a pooled buffer (no copy) that the caller hands back with
   * `chunkBuffers.release` once nothing reads it any more. For streaming paths like restore and verify.
   */
  async getPooled(
    hash: string,
    algorithm: HashAlgorithm = CHUNK_HASH,
    options: ReadOptions = {},
  ): Promise<Buffer> {
    try {
      return await this.readVerified(hash, algorithm, options);
    } catch (error) {
      // A damaged chunk file is moved aside, as backy 2.5 and PBS do: the next backup that meets its
      // content then writes it anew instead of trusting the damaged copy.
      if (isBackyError(error, 'CHUNK_CORRUPT')) await this.quarantine(hash).catch(() => {});
      throw error;
    }
  }

  private async readVerified(hash: string, algorithm: HashAlgorithm, options: ReadOptions): Promise<Buffer> {
    const direct = options.bypassCache ?? false;
    const { file, codec, rawLength, payload } = await this.readFile(hash, direct);
    if (codec.id === 0) {
      // Stored raw: hashed in place and handed on without a copy, except after a direct read, where
      // the payload sits 12 bytes past an aligned address: copied once to an aligned buffer, so that
      // it can be written out directly again.
      if (payload.length !== rawLength || (await hashChunk(payload, algorithm)) !== hash) {
        chunkBuffers.release(file);
        throw corruptChunk(hash, 'content does not match its hash');
      }
      if (!direct) return payload;
      const out = chunkBuffers.acquire(rawLength);
      payload.copy(out);
      chunkBuffers.release(file);
      return out;
    }
    const out = chunkBuffers.acquire(rawLength);
    let result: { length: number; hash: string };
    try {
      result = await codec.decompressInto(payload, out, algorithm);
    } catch (error) {
      chunkBuffers.release(out);
      throw corruptChunk(hash, 'cannot decompress', error);
    } finally {
      chunkBuffers.release(file);
    }
    if (result.length !== rawLength || result.hash !== hash) {
      chunkBuffers.release(out);
      throw corruptChunk(hash, 'content does not match its hash');
    }
    return out;
  }

  /**
   * True if the stored chunk `hash` holds exactly `expected`, compared byte for byte after
   * decompression, without hashing. This does not prove the file matches its name on its own: it is
   * for checking a chunk just written from bytes that hashed to `hash` against those bytes read
   * again, where equal bytes prove both. A missing chunk throws CHUNK_MISSING; a damaged one is false.
   */
  async equals(hash: string, expected: Buffer): Promise<boolean> {
    let chunk: ChunkFile;
    try {
      chunk = await this.readFile(hash, true);
    } catch (error) {
      if (isBackyError(error, 'CHUNK_CORRUPT')) return false;
      throw error;
    }
    const { file, codec, rawLength, payload } = chunk;
    try {
      if (rawLength !== expected.length) return false;
      if (codec.id === 0 || codec.name === 'zstd')
        return await chunkWorkers().equals(payload, expected, codec.id === 0);
      const out = chunkBuffers.acquire(rawLength);
      try {
        const { length } = await codec.decompressInto(payload, out, CHUNK_HASH);
        return out.subarray(0, length).equals(expected);
      } finally {
        chunkBuffers.release(out);
      }
    } catch {
      return false;
    } finally {
      chunkBuffers.release(file);
    }
  }

  /** Reads a chunk file and checks its header; `direct` reads it past the page cache where possible. */
  private async readFile(hash: string, direct = false): Promise<ChunkFile> {
    const path = this.pathOf(hash);
    let file: Buffer;
    try {
      file = await readWhole(path, this.maxChunkFile, direct);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        if (await exists(`${path}${DAMAGED_SUFFIX}`)) {
          throw corruptChunk(
            hash,
            `an earlier read found it damaged and moved it aside to ${path}${DAMAGED_SUFFIX}`,
            error,
          );
        }
        throw new BackyError('CHUNK_MISSING', `chunk ${hash} is missing from ${this.chunksDir}`, {
          cause: error,
        });
      }
      throw ioError(error, `reading chunk ${path}`);
    }
    if (file.length < HEADER_BYTES || !file.subarray(0, 4).equals(MAGIC)) {
      chunkBuffers.release(file);
      throw corruptChunk(hash, 'bad header');
    }
    const codec = codecById(file.readUInt8(4));
    if (codec == null) {
      chunkBuffers.release(file);
      throw corruptChunk(hash, `unknown codec ${file.readUInt8(4)}`);
    }
    return { file, codec, rawLength: file.readUInt32LE(8), payload: file.subarray(HEADER_BYTES) };
  }

  async delete(hash: string): Promise<void> {
    await unlink(this.pathOf(hash)).catch((error) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(error, `deleting chunk ${hash}`);
    });
  }

  /**
   * All stored hashes, with their file sizes; also yields stale temp files (hash null) and quarantined
   * chunk files (`damagedOf`) for clean-up.
   */
  async *entries(): AsyncIterable<StoreEntry> {
    let fans: string[];
    try {
      fans = await readdir(this.chunksDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw ioError(error, `listing ${this.chunksDir}`);
    }
    for (const fan of fans.sort()) {
      if (!/^[0-9a-f]{2}$/.test(fan)) continue;
      const dir = join(this.chunksDir, fan);
      for (const name of await readdir(dir)) {
        const path = join(dir, name);
        const bytes = await stat(path).then(
          (s) => s.size,
          () => -1,
        );
        if (bytes < 0) continue;
        if (HASH_RE.test(name)) yield { hash: name, path, bytes };
        else if (name.endsWith(DAMAGED_SUFFIX) && HASH_RE.test(name.slice(0, -DAMAGED_SUFFIX.length)))
          yield { hash: null, damagedOf: name.slice(0, -DAMAGED_SUFFIX.length), path, bytes };
        else if (isTempName(name)) yield { hash: null, path, bytes };
      }
    }
  }

  /**
   * Records that archive `id` at `archiveDir` uses this store: `.archives/<id>.<hash of path>` holds the
   * path. An archive that moved gets a second entry; purge drops the old one once it sees the same ID
   * live at the new path. Entries of the older form (a hash of the path alone) are replaced.
   */
  async register(id: string, archiveDir: string): Promise<void> {
    const abs = resolve(archiveDir);
    const entry = join(this.registryDir, `${id}.${pathKey(abs)}`);
    const existing = await readFile(entry, 'utf8').catch(() => null);
    if (existing?.trim() !== abs) await writeFileAtomic(entry, `${abs}\n`, { mode: 0o640 });
    const legacy = join(this.registryDir, pathKey(abs));
    if ((await readFile(legacy, 'utf8').catch(() => null))?.trim() === abs) await rm(legacy, { force: true });
  }

  /** Removes a registry entry (by its file name, from `registeredArchives`). */
  async unregisterEntry(entry: string): Promise<void> {
    await rm(join(this.registryDir, basename(entry)), { force: true });
    await fsyncDir(this.registryDir).catch(() => {});
  }

  /** The archives registered as users of this store: entry name, archive ID (null for old entries), path. */
  async registeredArchives(): Promise<RegistryEntry[]> {
    const dir = this.registryDir;
    const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[];
      throw ioError(error, `reading the archive registry ${dir}`);
    });
    const out: RegistryEntry[] = [];
    for (const name of names) {
      if (isTempName(name)) continue;
      const text = await readFile(join(dir, name), 'utf8').catch((error) => {
        throw ioError(error, `reading registry entry ${join(dir, name)}`);
      });
      const path = text.trim();
      if (path === '') continue;
      const dot = name.indexOf('.');
      out.push({ entry: name, id: dot > 0 ? name.slice(0, dot) : null, path });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path) || a.entry.localeCompare(b.entry));
  }

  /** Whether the store's directory exists. */
  exists(): Promise<boolean> {
    return exists(this.registryDir);
  }

  /**
   * Moves a damaged chunk file aside (`<hash>.damaged`), so the next backup that meets its content
   * writes it anew instead of reusing it; purge removes the quarantined file once nothing references
   * the hash. Returns false if there was no file to move.
   */
  async quarantine(hash: string): Promise<boolean> {
    const path = this.pathOf(hash);
    try {
      await rename(path, `${path}${DAMAGED_SUFFIX}`);
      await fsyncDir(dirname(path)).catch(() => {});
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw ioError(error, `moving damaged chunk ${path} aside`);
    }
  }

  /** Of `hashes`, those whose chunk file is not in the store (missing or quarantined). */
  async missing(hashes: Iterable<string>): Promise<string[]> {
    const out: string[] = [];
    const all = [...hashes];
    for (let i = 0; i < all.length; i += 64) {
      const batch = all.slice(i, i + 64);
      const present = await Promise.all(batch.map((h) => this.has(h)));
      batch.forEach((h, j) => {
        if (!present[j]) out.push(h);
      });
    }
    return out;
  }
}

export interface StoreEntry {
  /** The chunk's hash; null for a file that is not a chunk (temp or quarantined). */
  hash: string | null;
  /** For a quarantined chunk file: the hash it was stored under. */
  damagedOf?: string;
  path: string;
  bytes: number;
}

export interface RegistryEntry {
  /** The entry's file name in `.archives/`. */
  entry: string;
  /** The archive's ID; null for entries written before archives had IDs. */
  id: string | null;
  path: string;
}

function pathKey(abs: string): string {
  return createHash('sha256').update(abs).digest('hex').slice(0, 32);
}
