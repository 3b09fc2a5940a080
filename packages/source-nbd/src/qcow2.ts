/**
 * The `qcow2` source: an image file that backy serves to itself with `qemu-nbd --read-only` on a
 * private unix socket, with a persistent dirty bitmap per backup that backy rotates with `qemu-img
 * bitmap`. Backup N adds `backy-<N>` before reading, reads what `backy-<N-1>` (the bitmap the parent
 * recorded) marks dirty, and only once revision N is committed removes `backy-<N-1>`. The image must not
 * be written during the backup (VM stopped, or the image is an external snapshot's backing file).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  type BackupContext,
  type BackupSource,
  BackyError,
  defineSource,
  type VerificationResult,
  type VerifyContext,
} from '@backy/core/source';
import { BASE_ALLOCATION } from '@backy/nbd-protocol';
import type { Logger } from 'pino';
import { NbdClient } from './client.js';
import {
  type BackupRun,
  backupExport,
  dirtyBitmapContext,
  type SampleHooks,
  verifyExport,
} from './export-backup.js';
import { type Qcow2SourceOptions, qcow2SourceOptions } from './qcow2-options.js';

/** Bitmaps backy makes are named `backy-<revision id>`; other bitmaps are never touched. */
export const BITMAP_PREFIX = 'backy-';

export type { Qcow2SourceOptions } from './qcow2-options.js';

export interface Qcow2SourceHooks extends SampleHooks {
  /** The qemu-img executable (default `qemu-img`). */
  qemuImg?: string;
  /** The qemu-nbd executable (default `qemu-nbd`). */
  qemuNbd?: string;
}

export interface ImageBitmap {
  name: string;
  flags: string[];
}

export interface ImageInfo {
  format: string;
  size: number;
  bitmaps: ImageBitmap[];
}

function run(binary: string, args: string[], what: string): Promise<string> {
  return new Promise((done, fail) => {
    execFile(binary, args, { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error == null) return done(stdout);
      const code = (error as NodeJS.ErrnoException).code;
      const line =
        code === 'ENOENT'
          ? `${binary} is not installed (Debian: qemu-utils)`
          : (stderr.trim().split('\n').at(-1) ?? error.message).replace(/^qemu-\w+: /, '');
      fail(new BackyError('SOURCE_FAILED', `${what}: ${line}`, { cause: error }));
    });
  });
}

/** `qemu-img info` of the image (shared, so it works while another process holds the image). */
export async function imageInfo(filename: string, qemuImg = 'qemu-img'): Promise<ImageInfo> {
  try {
    await stat(filename);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new BackyError(
      'SOURCE_UNAVAILABLE',
      `qcow2 image ${filename}: ${code === 'ENOENT' ? 'no such file' : (code ?? String(error))}`,
      { cause: error },
    );
  }
  const out = await run(
    qemuImg,
    ['info', '--force-share', '--output=json', filename],
    `qemu-img info ${filename}`,
  );
  const info = JSON.parse(out) as {
    format: string;
    'virtual-size': number;
    'format-specific'?: { data?: { bitmaps?: ImageBitmap[] } };
  };
  return {
    format: info.format,
    size: info['virtual-size'],
    bitmaps: info['format-specific']?.data?.bitmaps ?? [],
  };
}

async function bitmapCommand(filename: string, op: '--add' | '--remove', name: string, qemuImg: string) {
  await run(qemuImg, ['bitmap', op, filename, name], `qemu-img bitmap ${op} ${name} on ${filename}`).catch(
    (error: BackyError) => {
      if (/lock|another process/i.test(error.message))
        throw new BackyError(
          'SOURCE_UNAVAILABLE',
          `qcow2 image ${filename} is in use by another process (is the VM running?): backy cannot ${op === '--add' ? 'add' : 'remove'} bitmap ${name}`,
          { cause: error },
        );
      throw error;
    },
  );
}

/** Why the parent's bitmap cannot make an incremental, or null when it can. */
export function bitmapProblem(bitmaps: ImageBitmap[], name: string): string | null {
  const bitmap = bitmaps.find((b) => b.name === name);
  if (bitmap == null) return `bitmap ${name} the parent revision recorded is missing from the image`;
  if (bitmap.flags.includes('in-use'))
    return `bitmap ${name} is inconsistent (in-use: the image was not closed cleanly)`;
  if (!bitmap.flags.includes('auto')) return `bitmap ${name} is disabled`;
  return null;
}

/** A qemu-nbd serving the image read-only on a private socket; killed on every way out. */
export interface PrivateServer {
  socket: string;
  stop(): Promise<void>;
}

export async function startQemuNbd(
  filename: string,
  bitmap: string | null,
  options: { qemuNbd?: string; logger?: Logger; signal?: AbortSignal } = {},
): Promise<PrivateServer> {
  const binary = options.qemuNbd ?? 'qemu-nbd';
  const dir = await mkdtemp(join(tmpdir(), 'backy-qemu-nbd-'));
  const socket = join(dir, 'nbd.sock');
  const child: ChildProcess = spawn(
    binary,
    [
      '--read-only',
      '--persistent',
      '--shared=16',
      `--socket=${socket}`,
      '--format=qcow2',
      '--export-name=backy',
      ...(bitmap != null ? [`--bitmap=${bitmap}`] : []),
      filename,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (piece: Buffer) => {
    stderr += piece.toString();
  });
  let exited: string | null = null;
  const exit = new Promise<void>((done) => {
    child.once('error', (error: NodeJS.ErrnoException) => {
      exited = error.code === 'ENOENT' ? `${binary} is not installed (Debian: qemu-utils)` : error.message;
      done();
    });
    child.once('exit', (code, signal) => {
      exited ??=
        stderr
          .trim()
          .split('\n')
          .at(-1)
          ?.replace(/^qemu-nbd: /, '') || `exited (${code ?? signal})`;
      done();
    });
  });
  // A backy that exits without cleaning up (a crash, process.exit) must not leave qemu-nbd running.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.removeListener('exit', killOnExit);
    if (exited == null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let waited = 0; ; waited += 20) {
      if (exited != null)
        throw new BackyError('SOURCE_FAILED', `qemu-nbd could not serve ${filename}: ${exited}`);
      options.signal?.throwIfAborted();
      if (
        await stat(socket).then(
          () => true,
          () => false,
        )
      )
        break;
      if (waited > 30_000)
        throw new BackyError('SOURCE_FAILED', `qemu-nbd did not start serving ${filename} within 30 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  options.logger?.debug({ socket, bitmap, pid: child.pid }, 'qemu-nbd started');
  return { socket, stop };
}

type FinishContext = Parameters<NonNullable<BackupSource['finish']>>[0];

interface Qcow2Run {
  /** The bitmap this backup added: the next backup's `from`. */
  bitmap: string;
  added: boolean;
  server: PrivateServer | null;
  backup: BackupRun | null;
}

export function createQcow2Source(options: Qcow2SourceOptions, hooks: Qcow2SourceHooks = {}): BackupSource {
  const filename = resolve(options.filename);
  const qemuImg = hooks.qemuImg ?? 'qemu-img';
  const runs = new Map<string, Qcow2Run>();

  const connect = (server: PrivateServer, metaContexts: string[], signal: AbortSignal) =>
    NbdClient.connect(
      { transport: 'unix', socket: server.socket, exportName: 'backy' },
      { metaContexts, signal },
    );

  async function backup(ctx: BackupContext): Promise<void> {
    ctx.signal.throwIfAborted();
    const info = await imageInfo(filename, qemuImg);
    if (info.format !== 'qcow2')
      throw new BackyError(
        'SOURCE_FAILED',
        `${filename} is a ${info.format} image, not qcow2 (use type: file)`,
      );
    const parentInfo = ctx.parent?.revision.source_info ?? {};
    const from =
      parentInfo.filename === filename && typeof parentInfo.bitmap === 'string' ? parentInfo.bitmap : null;
    let fullReason: string | undefined;
    if (ctx.parent == null) fullReason = 'no trusted parent revision';
    else if (from == null) fullReason = 'the parent revision recorded no bitmap of this image';
    else fullReason = bitmapProblem(info.bitmaps, from) ?? undefined;
    if (fullReason != null && ctx.parent != null)
      ctx.logger.warn({ bitmap: from }, `${fullReason}: full backup`);
    const useBitmap = fullReason == null ? from : null;

    const state: Qcow2Run = {
      bitmap: `${BITMAP_PREFIX}${ctx.revision.uuid}`,
      added: false,
      server: null,
      backup: null,
    };
    runs.set(ctx.revision.uuid, state);
    // Added before anything is read: every write after this point is in the next backup.
    await bitmapCommand(filename, '--add', state.bitmap, qemuImg);
    state.added = true;
    ctx.remember({ filename, bitmap: state.bitmap });
    state.server = await startQemuNbd(filename, useBitmap, {
      qemuNbd: hooks.qemuNbd,
      logger: ctx.logger,
      signal: ctx.signal,
    });
    const client = await connect(
      state.server,
      [BASE_ALLOCATION, ...(useBitmap != null ? [dirtyBitmapContext(useBitmap)] : [])],
      ctx.signal,
    );
    try {
      state.backup = await backupExport(ctx, client, { bitmap: useBitmap, fullReason }, hooks);
    } finally {
      await client.close();
    }
  }

  /** The backup, with qemu-nbd stopped when it fails (on success it serves verify, and finish stops it). */
  async function backupOrStop(ctx: BackupContext): Promise<void> {
    try {
      await backup(ctx);
    } catch (error) {
      await runs.get(ctx.revision.uuid)?.server?.stop();
      throw error;
    }
  }

  async function verify(ctx: VerifyContext): Promise<VerificationResult> {
    const state = runs.get(ctx.revision.uuid);
    let server = state?.server ?? null;
    const own = server == null;
    server ??= await startQemuNbd(filename, null, { qemuNbd: hooks.qemuNbd, signal: ctx.signal });
    try {
      const client = await connect(server, [], ctx.signal);
      try {
        return await verifyExport(ctx, client, state?.backup ?? null, hooks);
      } finally {
        await client.close();
      }
    } finally {
      if (own) await server.stop();
    }
  }

  async function finish({ revision, success, logger }: FinishContext): Promise<void> {
    const state = runs.get(revision.uuid);
    runs.delete(revision.uuid);
    if (state == null) return;
    await state.server?.stop();
    if (!state.added) return;
    const remove = async (name: string, why: string) => {
      try {
        await bitmapCommand(filename, '--remove', name, qemuImg);
        logger.info({ bitmap: name }, why);
      } catch (error) {
        logger.warn(
          { bitmap: name, err: error },
          `could not remove bitmap ${name}: ${(error as Error).message}`,
        );
      }
    };
    if (!success) {
      // The parent's bitmap stays: it still holds every change since the parent, and this run's too.
      await remove(state.bitmap, 'removed the bitmap of the failed backup');
      return;
    }
    const { bitmaps } = await imageInfo(filename, qemuImg);
    for (const b of bitmaps) {
      if (b.name.startsWith(BITMAP_PREFIX) && b.name !== state.bitmap)
        await remove(b.name, 'removed an older backy bitmap');
    }
  }

  return { backup: backupOrStop, verify, finish };
}

export const qcow2Source = defineSource<Qcow2SourceOptions>({
  type: 'qcow2',
  optionsSchema: qcow2SourceOptions,
  create: (options) => createQcow2Source(options),
  parseInitArgument: (argument) => ({ filename: resolve(argument) }),
  describe: (options) => options.filename,
  paths: ['filename'],
  async checkInit(options) {
    try {
      const info = await imageInfo(resolve(options.filename));
      return info.format === 'qcow2' ? [] : [`${options.filename} is a ${info.format} image, not qcow2`];
    } catch (error) {
      return [(error as Error).message];
    }
  },
});

export default qcow2Source;
