import { execFile } from 'node:child_process';
import { chmod, chown, lstat, mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import { connect, type Server } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { BackyError } from './errors.js';

export interface UnixSocketOptions {
  /**
   * A group whose members may connect too (the socket is then mode 0660 and owned by that group);
   * default none: mode 0600, only the owner (and root) can connect.
   */
  gid?: number;
}

/** A listening Unix socket; `close()` stops the server and removes the socket file. */
export interface UnixSocketListener {
  path: string;
  mode: number;
  close(): Promise<void>;
}

/**
 * Makes `server` listen on a Unix socket at `path` that only its owner (or a group) may connect to:
 * Linux checks write permission on the socket file at connect. The socket is bound inside a fresh 0700
 * directory beside `path`, given its mode and group there and only then renamed into place, so it is
 * never reachable with looser permissions, whatever the umask. A socket left at `path` by a server that
 * died is replaced; a live one, or anything that is not a socket, is an error.
 */
export async function listenUnixSocket(
  server: Server,
  path: string,
  options: UnixSocketOptions = {},
): Promise<UnixSocketListener> {
  await clearStaleSocket(path);
  const mode = options.gid == null ? 0o600 : 0o660;
  let staging: string;
  try {
    staging = await mkdtemp(join(dirname(path), `.${basename(path).slice(0, 20)}.`));
  } catch (error) {
    throw new BackyError('IO', `cannot create the socket ${path}: ${describe(error)}`, { cause: error });
  }
  const bound = join(staging, 's');
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: bound }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(bound, mode);
    if (options.gid != null) await chown(bound, -1, options.gid);
    await rename(bound, path);
  } catch (error) {
    server.close();
    throw new BackyError('IO', `cannot listen on the socket ${path}: ${describe(error)}`, { cause: error });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  const { ino } = await lstat(path);
  return {
    path,
    mode,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      // Only our own socket: another server may have taken the path since.
      const now = await lstat(path).catch(() => null);
      if (now?.isSocket() && now.ino === ino) await unlink(path).catch(() => {});
    },
  };
}

async function clearStaleSocket(path: string): Promise<void> {
  const stats = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw new BackyError('IO', `cannot use the socket path ${path}: ${describe(error)}`, { cause: error });
  });
  if (stats == null) return;
  if (!stats.isSocket()) {
    throw new BackyError('IO', `cannot use the socket path ${path}: it exists and is not a socket`);
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live)
    throw new BackyError('IO', `cannot listen on the socket ${path}: another server is listening there`);
  await unlink(path).catch(() => {});
}

/**
 * The group ID of a group name (through NSS, as `getent group` resolves it) or of a numeric ID; a clear
 * error for a group that does not exist.
 */
export async function resolveGroup(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const line = await new Promise<string>((resolve) => {
    execFile('getent', ['group', group], { encoding: 'utf8' }, (error, stdout) =>
      resolve(error ? '' : stdout),
    );
  });
  const gid = line.split(':')[2];
  if (gid == null || !/^\d+$/.test(gid))
    throw new BackyError('USAGE', `unknown group ${JSON.stringify(group)}`);
  return Number(gid);
}

function describe(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  if (e.code === 'EACCES') return 'permission denied';
  if (e.code === 'ENOENT') return 'no such directory';
  return e.code ?? e.message;
}
