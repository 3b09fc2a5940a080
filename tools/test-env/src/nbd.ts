/**
 * Real NBD servers and QEMU images for the tests: nbdkit and qemu-nbd on private unix sockets, and
 * qemu-img / qemu-io to make and write the images they serve.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { missingTools } from './index.js';

/**
 * Why tests that run the servers and tools here must skip, or null; the reason is printed with
 * `label`, as `skipWithout` does.
 */
export function nbdToolsSkip(label: string): string | null {
  const reason = missingTools('qemu-img', 'qemu-io', 'qemu-nbd', 'nbdkit');
  if (reason != null) console.warn(`[${label}] skipped: ${reason}`);
  return reason;
}

export interface Server {
  socket: string;
  /** `nbd+unix:///NAME?socket=…` of the export. */
  url(exportName?: string): string;
  stop(): Promise<void>;
}

async function serve(
  command: string,
  args: (socket: string) => string[],
  exportName: string,
  at?: string,
): Promise<Server> {
  const dir = at == null ? await mkdtemp(join(tmpdir(), 'backy-nbd-server-')) : null;
  const socket = at ?? join(dir!, 'sock');
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
      if (dir != null) await rm(dir, { recursive: true, force: true });
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

/** Runs a tool to its end; its stdout, or an error with its stderr. */
export function tool(command: string, ...args: string[]): Promise<string> {
  return new Promise((done, fail) =>
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
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
