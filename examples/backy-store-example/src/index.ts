/**
 * backy-store-example: a backend that keeps every object as one file in a flat directory, its name
 * percent-encoded (`chunks/ab/<hash>` → `chunks%2Fab%2F<hash>`). It says it has no local path, so the
 * repository above it keeps the revisions, the lease objects and the store's marker in it too, as it
 * does in S3: an archive can be rebuilt from this directory alone.
 *
 * Create-if-absent is link(2) of a finished temporary file; a conditional replace or remove holds a
 * `.cas-` file made with O_EXCL while it compares the version and renames or unlinks. Both are atomic
 * among the processes of one host on a local filesystem, and no more: the backend says so
 * (`conditionalWrites: 'one-host'`), and the repository then refuses leases written by another machine.
 * A `.cas-` file names its writer (boot, PID namespace, pid) and is broken only when that process is
 * gone, never for its age: a writer that stalls keeps it.
 *
 *   store: {type: backy-store-example, path: /srv/objects}
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
} from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  type Backend,
  type BackendObject,
  BackyError,
  defineStoreDriver,
  type LoadOptions,
  type SaveOptions,
} from '@backy/core/store';
import { z } from 'zod';

/** This boot of this host and this PID namespace, as a `.cas-` file records its writer (null: unknown). */
const HOST: string | null = (() => {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return `${boot}/${statSync('/proc/self/ns/pid').ino}`;
  } catch {
    return null;
  }
})();

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException)?.code === 'ENOENT';
const isTaken = (error: unknown) => (error as NodeJS.ErrnoException)?.code === 'EEXIST';

export class FlatDirectoryBackend implements Backend {
  readonly capabilities = {
    conditionalWrites: 'one-host',
    atomicMove: false,
    localPath: null,
    concurrency: 8,
  } as const;

  constructor(readonly location: string) {}

  async init(): Promise<void> {
    await this.io('creating the directory', () => mkdir(this.location, { recursive: true }));
  }

  async saveOnce(name: string, data: Uint8Array): Promise<BackendObject | null> {
    const temp = await this.writeTemp(name, data);
    try {
      await link(temp, this.path(name));
    } catch (error) {
      if (isTaken(error)) return null;
      throw this.fail(`saving ${name}`, error);
    } finally {
      await rm(temp, { force: true });
    }
    return this.stat(name);
  }

  async save(name: string, data: Uint8Array, options: SaveOptions = {}): Promise<BackendObject | null> {
    if (options.ifVersion == null) {
      await this.replace(name, await this.writeTemp(name, data));
      return this.stat(name);
    }
    const cas = await this.takeCas(name);
    if (cas == null) return null;
    try {
      if ((await this.stat(name))?.version !== options.ifVersion) return null;
      await this.replace(name, await this.writeTemp(name, data));
      return await this.stat(name);
    } finally {
      await cas.close();
      await rm(this.casPath(name), { force: true });
    }
  }

  async load(name: string, options: LoadOptions = {}): Promise<Buffer | null> {
    try {
      if (options.range == null) return await readFile(this.path(name));
      const handle = await open(this.path(name), 'r');
      try {
        const out = Buffer.alloc(options.range.length);
        const { bytesRead } = await handle.read(out, 0, out.length, options.range.offset);
        return out.subarray(0, bytesRead);
      } finally {
        await handle.close();
      }
    } catch (error) {
      if (isMissing(error)) return null;
      throw this.fail(`reading ${name}`, error);
    }
  }

  async stat(name: string): Promise<BackendObject | null> {
    try {
      const s = await stat(this.path(name));
      return { name, bytes: s.size, version: `${s.ino}-${s.size}-${s.mtimeMs}` };
    } catch (error) {
      if (isMissing(error)) return null;
      throw this.fail(`looking up ${name}`, error);
    }
  }

  async *list(prefix: string): AsyncIterable<BackendObject> {
    const files = await this.io('listing', () => readdir(this.location));
    const names = files
      .filter((file) => !file.startsWith('.'))
      .map((file) => decodeURIComponent(file))
      .filter((name) => name.startsWith(prefix))
      .sort();
    for (const name of names) {
      const object = await this.stat(name);
      if (object != null) yield object;
    }
  }

  async remove(name: string): Promise<void> {
    await this.io(`removing ${name}`, () => rm(this.path(name), { force: true }));
  }

  async removeVersion(name: string, version: string): Promise<boolean> {
    const cas = await this.takeCas(name);
    if (cas == null) return false;
    try {
      if ((await this.stat(name))?.version !== version) return false;
      await this.remove(name);
      return true;
    } finally {
      await cas.close();
      await rm(this.casPath(name), { force: true });
    }
  }

  async flush(): Promise<void> {
    const dir = await this.io('syncing', () => open(this.location, 'r'));
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  private path(name: string): string {
    return join(this.location, encodeURIComponent(name));
  }

  private casPath(name: string): string {
    return join(this.location, `.cas-${encodeURIComponent(name)}`);
  }

  /** A finished, synced temporary file with `data`, beside the objects (so link and rename stay on one filesystem). */
  private async writeTemp(name: string, data: Uint8Array): Promise<string> {
    const temp = join(this.location, `.tmp-${randomBytes(8).toString('hex')}`);
    let handle: FileHandle | null = null;
    try {
      handle = await open(temp, 'wx', 0o600);
      await handle.writeFile(data);
      await handle.sync();
      return temp;
    } catch (error) {
      await rm(temp, { force: true });
      throw this.fail(`writing ${name}`, error);
    } finally {
      await handle?.close();
    }
  }

  private async replace(name: string, temp: string): Promise<void> {
    try {
      await rename(temp, this.path(name));
    } catch (error) {
      await rm(temp, { force: true });
      throw this.fail(`saving ${name}`, error);
    }
  }

  /** The `.cas-` file of `name`, or null while another writer holds it (it lost the race). */
  private async takeCas(name: string): Promise<FileHandle | null> {
    for (let attempt = 0; attempt < 2; attempt++) {
      let handle: FileHandle;
      try {
        handle = await open(this.casPath(name), 'wx', 0o600);
      } catch (error) {
        if (!isTaken(error)) throw this.fail(`locking ${name}`, error);
        if (!(await this.breakAbandonedCas(name))) return null;
        continue;
      }
      try {
        await handle.writeFile(`${HOST}\n${process.pid}\n`);
      } catch (error) {
        await handle.close();
        await rm(this.casPath(name), { force: true });
        throw this.fail(`locking ${name}`, error);
      }
      return handle;
    }
    return null;
  }

  /**
   * Removes the `.cas-` file of `name` if its writer is gone (a process of this host that exited, or of
   * an earlier boot): true if it did. It is renamed aside first and removed only if it is still the file
   * judged (same inode), so a breaker never removes the `.cas-` file a live writer has just made.
   */
  private async breakAbandonedCas(name: string): Promise<boolean> {
    const path = this.casPath(name);
    const judged = await stat(path).catch(() => null);
    const text = await readFile(path, 'utf8').catch(() => null);
    if (judged == null || text == null) return judged == null; // gone meanwhile: try again
    if (!writerGone(text)) return false;
    const aside = join(this.location, `.tmp-${randomBytes(8).toString('hex')}`);
    if (
      !(await rename(path, aside).then(
        () => true,
        () => false,
      ))
    )
      return true;
    if ((await stat(aside).catch(() => null))?.ino === judged.ino) {
      await unlink(aside).catch(() => {});
      return true;
    }
    // A live writer's file after all: put it back, unless another one is there already.
    await link(aside, path).catch(() => {});
    await unlink(aside).catch(() => {});
    return false;
  }

  private async io<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw this.fail(what, error);
    }
  }

  private fail(what: string, error: unknown): BackyError {
    const err = error as NodeJS.ErrnoException;
    const code = err?.code === 'ENOSPC' ? 'NO_SPACE' : 'IO';
    return new BackyError(code, `${this.location}: ${what}: ${err?.code ?? err?.message ?? String(error)}`, {
      cause: error,
    });
  }
}

/** Whether the process a `.cas-` file names (`HOST\npid\n`) is gone; false while unsure. */
function writerGone(text: string): boolean {
  const [host, pid] = text.split('\n');
  if (HOST == null || host == null || !pid) return false; // not written yet, or no /proc
  if (host.split('/')[0] !== HOST.split('/')[0]) return true; // written before this boot
  if (host !== HOST) return false; // another PID namespace: its pids mean nothing here
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'EPERM';
  }
}

export default defineStoreDriver({
  type: 'backy-store-example',
  optionsSchema: z.strictObject({
    /** The directory holding the objects; relative to the archive directory. */
    path: z.string().min(1),
  }),
  open: (options, context) => new FlatDirectoryBackend(resolve(context.archiveDir, options.path)),
});
