import { link, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ioError } from '../errors.js';
import { fsyncDir, tempPathFor } from '../fs-util.js';
import { PRIVATE_DIR_MODE } from '../private-modes.js';
import { ChunkFileWriter, readChunkFile } from './chunk-file-io.js';
import type { Backend, BackendCapabilities, BackendObject, LoadOptions, SaveOptions } from './contract.js';

/** The conditional save running per file, so that two in this process do not both pass the check. */
const conditional = new Map<string, Promise<void>>();

/** Runs `work` after every conditional change of `path` this process started before it. */
function oneAtATime<T>(path: string, work: () => Promise<T>): Promise<T> {
  const previous = conditional.get(path) ?? Promise.resolve();
  const next = previous.then(work);
  const settled = next.then(
    () => {},
    () => {},
  );
  conditional.set(path, settled);
  void settled.then(() => {
    if (conditional.get(path) === settled) conditional.delete(path);
  });
  return next;
}

/**
 * The built-in backend: a directory, each object a file (`<root>/ab/<hash>` for chunks, the layout of
 * every directory store so far). Writes go to a temp file beside the target (`.<name>.<random>.tmp`),
 * written with O_DIRECT from the pooled buffer where the file system takes it, fsynced and then linked
 * (`saveOnce`: link(2) fails on an existing name, so of two writers one wins) or renamed into place; the
 * directories written to are fsynced by `flush`. Files are read-only (0440): objects are replaced by a
 * rename, never rewritten in place.
 */
export class DirectoryBackend implements Backend {
  readonly location: string;
  readonly capabilities: BackendCapabilities;
  private readonly writer = new ChunkFileWriter();
  private readonly knownDirs = new Set<string>();
  private readonly dirtyDirs = new Set<string>();
  /** Whether link(2) works here; turned off by the first EPERM/ENOTSUP (a file system without hard links). */
  private links = true;

  constructor(root: string) {
    this.location = resolve(root);
    this.capabilities = {
      conditionalWrites: true,
      atomicMove: true,
      localPath: this.location,
      concurrency: 64,
    };
  }

  /** The file of object `name`. */
  pathOf(name: string): string {
    return join(this.location, ...name.split('/'));
  }

  async init(): Promise<void> {
    await mkdir(this.location, { recursive: true, mode: PRIVATE_DIR_MODE }).catch((error) => {
      throw ioError(error, `creating ${this.location}`);
    });
  }

  async saveOnce(name: string, data: Uint8Array): Promise<BackendObject | null> {
    const path = this.pathOf(name);
    if ((await this.stat(name)) != null) {
      // Another writer's object, perhaps still in flight: the caller now relies on it being durable.
      this.relyOnDir(dirname(path));
      return null;
    }
    return this.write(name, path, data, async (tmp) => {
      if (!this.links) return (await this.stat(name)) == null ? rename(tmp, path) : false;
      try {
        await link(tmp, path);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return false;
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error;
        this.links = false;
        return (await this.stat(name)) == null ? rename(tmp, path) : false;
      }
      await unlink(tmp);
    });
  }

  /**
   * `ifVersion` is compared and the file then renamed over: one at a time per file in this process (every
   * handle, also against `removeVersion`), but not atomic against another process. The store of a local directory never needs it across processes:
   * it locks with flock(2), not with lease objects.
   */
  save(name: string, data: Uint8Array, options: SaveOptions = {}): Promise<BackendObject | null> {
    const path = this.pathOf(name);
    const { ifVersion } = options;
    if (ifVersion == null) return this.write(name, path, data, (tmp) => rename(tmp, path));
    return oneAtATime(path, async () => {
      if ((await this.stat(name))?.version !== ifVersion) return null;
      return this.write(name, path, data, (tmp) => rename(tmp, path));
    });
  }

  /** Compared and then unlinked, one at a time per file in this process, as a conditional `save`. */
  removeVersion(name: string, version: string): Promise<boolean> {
    return oneAtATime(this.pathOf(name), async () => {
      if ((await this.stat(name))?.version !== version) return false;
      await this.remove(name);
      return true;
    });
  }

  /** Writes `data` to a temp file beside `path` and `place`s it (false: it was not placed, not written). */
  private async write(
    name: string,
    path: string,
    data: Uint8Array,
    place: (tmp: string) => Promise<unknown>,
  ): Promise<BackendObject | null> {
    const dir = dirname(path);
    if (!this.knownDirs.has(dir)) {
      await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE }).catch((e) => {
        throw ioError(e, `creating ${dir}`);
      });
    }
    const tmp = tempPathFor(path);
    let placed: unknown;
    try {
      await this.writer.write(tmp, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      placed = await place(tmp);
    } catch (error) {
      await rm(tmp, { force: true }).catch(() => {});
      throw ioError(error, `writing ${path}`);
    }
    // Placed or not (lost the race to another writer's object), the caller relies on the object now.
    this.relyOnDir(dir);
    if (placed === false) {
      await rm(tmp, { force: true }).catch(() => {});
      return null;
    }
    return this.stat(name);
  }

  relyOn(name: string): void {
    this.relyOnDir(dirname(this.pathOf(name)));
  }

  /**
   * Marks `dir` for the next `flush`; the first time this handle meets it, its ancestors up to the root
   * too: it may have been created just now (by this handle or another writer), and a directory's entry
   * is durable only once its parent is fsynced.
   */
  private relyOnDir(dir: string): void {
    this.dirtyDirs.add(dir);
    if (this.knownDirs.has(dir)) return;
    this.knownDirs.add(dir);
    for (let at = dir; at !== this.location && at.startsWith(`${this.location}/`); ) {
      at = dirname(at);
      this.dirtyDirs.add(at);
    }
  }

  async load(name: string, options: LoadOptions = {}): Promise<Buffer | null> {
    const path = this.pathOf(name);
    try {
      if (options.range != null) return await readRange(path, options.range);
      if (options.pooled) return await readChunkFile(path, options.bypassCache ?? false);
      return await readFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw ioError(error, `reading ${path}`);
    }
  }

  async stat(name: string): Promise<BackendObject | null> {
    const info = await stat(this.pathOf(name), { bigint: true }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return null;
      throw ioError(error, `looking for ${this.pathOf(name)}`);
    });
    if (info == null || !info.isFile()) return null;
    return { name, bytes: Number(info.size), version: `${info.ino}:${info.size}:${info.mtimeNs}` };
  }

  async *list(prefix: string): AsyncIterable<BackendObject> {
    const cut = prefix.lastIndexOf('/');
    const dir = prefix.slice(0, cut + 1);
    yield* this.walk(dir, prefix.slice(cut + 1));
  }

  /** The files under directory `dir` (a name prefix ending in `/`, or '') whose next part starts with `start`. */
  private async *walk(dir: string, start: string): AsyncIterable<BackendObject> {
    const path = join(this.location, ...dir.split('/'));
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw ioError(error, `listing ${path}`);
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (!entry.name.startsWith(start)) continue;
      if (entry.isDirectory()) yield* this.walk(`${dir}${entry.name}/`, '');
      else if (entry.isFile()) {
        const info = await this.stat(`${dir}${entry.name}`);
        if (info != null) yield info;
      }
    }
  }

  async remove(name: string): Promise<void> {
    await unlink(this.pathOf(name)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw ioError(error, `deleting ${this.pathOf(name)}`);
    });
  }

  async move(from: string, to: string): Promise<boolean> {
    const path = this.pathOf(from);
    try {
      await rename(path, this.pathOf(to));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw ioError(error, `moving ${path} to ${this.pathOf(to)}`);
    }
    await fsyncDir(dirname(path)).catch(() => {});
    return true;
  }

  async flush(): Promise<void> {
    const dirs = [...this.dirtyDirs];
    this.dirtyDirs.clear();
    await Promise.all(dirs.map((d) => fsyncDir(d)));
  }
}

async function readRange(
  path: string,
  { offset, length }: { offset: number; length: number },
): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const out = Buffer.allocUnsafe(length);
    let at = 0;
    while (at < length) {
      const { bytesRead } = await handle.read(out, at, length - at, offset + at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    return out.subarray(0, at);
  } finally {
    await handle.close();
  }
}
