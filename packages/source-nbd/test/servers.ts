/** Real NBD servers and images for the tests: nbdkit and qemu-nbd on private unix sockets. */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skipWithout } from '@backy/test-env';

export const MiB = 1024 * 1024;

/** Why the tests that need the QEMU tools and nbdkit must skip, or null. */
export const skipReason = skipWithout('source-nbd', 'qemu-img', 'qemu-io', 'qemu-nbd', 'nbdkit');

export interface Server {
  socket: string;
  /** `nbd+unix:///NAME?socket=…` of the export. */
  url(exportName?: string): string;
  stop(): Promise<void>;
}

export async function tempDir(
  prefix = 'backy-nbd-test-',
): Promise<{ path: string; cleanup(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

async function serve(
  command: string,
  args: (socket: string) => string[],
  exportName: string,
  at?: string,
): Promise<Server> {
  const dir = at == null ? await tempDir('backy-nbd-server-') : null;
  const socket = at ?? join(dir!.path, 'sock');
  await rm(socket, { force: true });
  const child: ChildProcess = spawn(command, args(socket), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  let exited = false;
  const exit = new Promise<void>((done) => child.once('exit', () => done()));
  void exit.then(() => {
    exited = true;
  });
  for (let i = 0; ; i++) {
    if (
      await stat(socket).then(
        () => true,
        () => false,
      )
    )
      break;
    if (exited || i > 500) {
      child.kill('SIGKILL');
      throw new Error(`${command} did not start: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    socket,
    url: (name = exportName) => `nbd+unix:///${name}?socket=${socket}`,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        await exit;
      }
      await rm(socket, { force: true });
      await dir?.cleanup();
    },
  };
}

/** nbdkit with a plugin and its arguments, e.g. `nbdkit('memory', 'size=8M')`. */
export function nbdkit(...plugin: string[]): Promise<Server> {
  return nbdkitAt(undefined, ...plugin);
}

/** nbdkit on the socket `at` (default a fresh one). */
export function nbdkitAt(at: string | undefined, ...plugin: string[]): Promise<Server> {
  return serve(
    'nbdkit',
    (socket) => ['--foreground', '--exit-with-parent', '--unix', socket, ...plugin],
    '',
    at,
  );
}

/** qemu-nbd serving `filename` as export `vm` (on the socket `at`, default a fresh one). */
export function qemuNbd(
  filename: string,
  format: 'raw' | 'qcow2',
  extra: string[] = [],
  at?: string,
): Promise<Server> {
  return serve(
    'qemu-nbd',
    (socket) => [
      '--persistent',
      '--shared=8',
      `--socket=${socket}`,
      `--format=${format}`,
      '--export-name=vm',
      ...extra,
      filename,
    ],
    'vm',
    at,
  );
}

export function tool(command: string, ...args: string[]): Promise<string> {
  return new Promise((done, fail) =>
    execFile(command, args, { maxBuffer: 64 * MiB }, (error, stdout, stderr) =>
      error
        ? fail(new Error(`${command} ${args.join(' ')}: ${stderr.trim() || error.message}`))
        : done(stdout),
    ),
  );
}

export const qemuImg = (...args: string[]) => tool('qemu-img', ...args);
/** Runs qemu-io commands on a qcow2 image (each `-c`). */
export const qemuIo = (filename: string, ...commands: string[]) =>
  tool('qemu-io', '-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), filename);
