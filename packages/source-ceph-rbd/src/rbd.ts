import { type ChildProcess, spawn } from 'node:child_process';
import { BackyError, type BackyErrorCode } from '@backy/core/source';
import type { Logger } from 'pino';

export interface CephClientOptions {
  /** Path of ceph.conf (rbd's default: /etc/ceph/ceph.conf). */
  conf?: string;
  /** Ceph client id, without `client.` (rbd's default: admin). */
  id?: string;
  /** Path of the client's keyring. */
  keyring?: string;
}

export interface RbdOptions extends CephClientOptions {
  /** The rbd executable (default `rbd` from PATH). */
  binary?: string;
  /** Time limit for short commands such as `snap create` (default 2 minutes). */
  timeoutMs?: number;
  /** Time a data stream may stall before it is given up (default 5 minutes). */
  idleTimeoutMs?: number;
  logger?: Logger;
}

export interface RbdSnapshot {
  id: number;
  name: string;
  size: number;
  protected: boolean;
  timestamp?: string;
}

export interface RbdImageInfo {
  size: number;
  objectSize: number;
  features: string[];
}

/** `POOL/IMAGE` or `POOL/IMAGE@SNAP`, as rbd spells it. */
export function imageSpec(pool: string, image: string, snapshot?: string | null): string {
  return snapshot == null ? `${pool}/${image}` : `${pool}/${image}@${snapshot}`;
}

/** A failed rbd run; `stderr` holds the tail of rbd's error output. */
export class RbdError extends BackyError {
  constructor(
    code: BackyErrorCode,
    message: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }

  /** rbd's errno text said the thing does not exist (image, pool or snapshot). */
  get notFound(): boolean {
    return /\(2\) No such file or directory/.test(this.stderr);
  }

  /** The snapshot is protected (or has clones) and cannot be removed. */
  get protectedSnapshot(): boolean {
    return /is protected|\(16\) Device or resource busy/.test(this.stderr);
  }
}

const STDERR_LIMIT = 16 * 1024;
const wholeObjectSupport = new Map<string, Promise<boolean>>();
const LOG_LINE = /^\d{4}-\d\d-\d\d[T ][\d:.]+[+-]\d{4} [0-9a-f]+ +-?\d+ /;

/** The most telling line of rbd's error output, on one line: rbd's own `rbd: …` message if there is one. */
export function summarizeStderr(stderr: string): string {
  const lines = stderr
    .split(/\r?\n|\r/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !/\d+% complete/.test(line));
  const own = lines.filter((line) => line.startsWith('rbd:'));
  const pick = own.at(-1) ?? lines.map((line) => line.replace(LOG_LINE, '')).at(-1) ?? '';
  return pick.length > 300 ? `${pick.slice(0, 300)}…` : pick;
}

/** Errors that mean the cluster or the image cannot be reached, as opposed to a failure while working. */
function classify(stderr: string): BackyErrorCode {
  if (/\((2|108|110|111|113)\) |timed out|monclient|error connecting to the cluster/i.test(stderr))
    return 'SOURCE_UNAVAILABLE';
  return 'SOURCE_FAILED';
}

interface Running {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** Set when the executable could not be started. */
  spawnError: NodeJS.ErrnoException | null;
  /** Set when we killed the process (timeout, abort, consumer gave up). */
  killedBecause: string | null;
  kill(reason: string): void;
}

/** Drives the `rbd` command-line tool, never through a shell. */
export class Rbd {
  readonly binary: string;
  private readonly timeoutMs: number;
  private readonly idleTimeoutMs: number;

  constructor(private readonly options: RbdOptions = {}) {
    this.binary = options.binary ?? 'rbd';
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 300_000;
  }

  /** The client settings, for other tools that talk to the same cluster (e.g. qemu-img). */
  get client(): CephClientOptions {
    const { conf, id, keyring } = this.options;
    return { conf, id, keyring };
  }

  /** Arguments that select the cluster and the client, before the command. */
  globalArgs(): string[] {
    const args: string[] = [];
    if (this.options.conf != null) args.push('--conf', this.options.conf);
    if (this.options.id != null) args.push('--id', this.options.id);
    if (this.options.keyring != null) args.push('--keyring', this.options.keyring);
    return args;
  }

  private start(args: string[], signal?: AbortSignal): Running {
    const argv = [...this.globalArgs(), ...args];
    this.options.logger?.debug({ argv: [this.binary, ...argv] }, 'running rbd');
    // Its own process group, so that a timeout or an abort also stops whatever rbd runs under (wrappers).
    const child = spawn(this.binary, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      shell: false,
      detached: true,
    });
    const signalGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid != null) process.kill(-child.pid, sig);
      } catch {
        child.kill(sig);
      }
    };
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      stderr = (stderr + text).slice(-STDERR_LIMIT);
    });
    const running: Running = {
      child,
      spawnError: null,
      killedBecause: null,
      stderr: () => stderr,
      exit: new Promise((resolve) => {
        child.once('error', (error: NodeJS.ErrnoException) => {
          running.spawnError = error;
          resolve({ code: null, signal: null });
        });
        // 'exit' rather than 'close': a consumer that stopped reading must not keep us waiting. Give
        // stderr a moment to drain so that the error message is complete.
        child.once('exit', (code, sig) => {
          const done = () => resolve({ code, signal: sig });
          if (child.stderr!.readableEnded) return done();
          child.stderr!.once('end', done);
          child.stderr!.once('close', done);
          setTimeout(done, 1000).unref();
        });
      }),
      kill(reason) {
        if (running.killedBecause == null) running.killedBecause = reason;
        // A reader blocked on stdout must not wait for the process (or its children) to let go.
        child.stdout!.destroy();
        if (child.exitCode == null && child.signalCode == null) {
          signalGroup('SIGTERM');
          setTimeout(() => {
            if (child.exitCode == null && child.signalCode == null) signalGroup('SIGKILL');
          }, 5000).unref();
        }
      },
    };
    const onAbort = () => running.kill('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    void running.exit.then(() => signal?.removeEventListener('abort', onAbort));
    return running;
  }

  /** Turns a finished run into an error, or null if it succeeded. */
  private failure(
    running: Running,
    status: { code: number | null; signal: NodeJS.Signals | null },
    what: string,
    cause?: unknown,
  ): RbdError | null {
    const { spawnError } = running;
    if (spawnError != null) {
      const why =
        spawnError.code === 'ENOENT'
          ? `${this.binary} not found (is ceph-common installed?)`
          : `cannot run ${this.binary}: ${spawnError.message}`;
      return new RbdError('SOURCE_UNAVAILABLE', `${what}: ${why}`, null, '', { cause: spawnError });
    }
    if (running.killedBecause === 'aborted')
      return new RbdError('ABORTED', `${what}: aborted`, status.code, running.stderr(), { cause });
    if (running.killedBecause != null && running.killedBecause !== 'consumer') {
      return new RbdError(
        'SOURCE_UNAVAILABLE',
        `${what}: ${running.killedBecause}`,
        status.code,
        running.stderr(),
        { cause },
      );
    }
    if (status.code === 0) return null;
    const stderr = running.stderr();
    const how = status.code != null ? `exit status ${status.code}` : `killed by ${status.signal}`;
    const detail = summarizeStderr(stderr);
    return new RbdError(
      classify(stderr),
      `${what} failed (${how})${detail ? `: ${detail}` : ''}`,
      status.code,
      stderr,
      { cause },
    );
  }

  /** Runs an rbd command to completion and returns its standard output. */
  async run(args: string[], options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<string> {
    const what = `rbd ${args.filter((a) => a !== '--no-progress').join(' ')}`;
    options.signal?.throwIfAborted();
    const running = this.start(args, options.signal);
    let stdout = '';
    running.child.stdout!.setEncoding('utf8');
    running.child.stdout!.on('data', (text: string) => {
      stdout += text;
    });
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const timer = setTimeout(() => running.kill(`timed out after ${seconds(timeoutMs)}`), timeoutMs);
    const status = await running.exit;
    clearTimeout(timer);
    const error = this.failure(running, status, what);
    if (error) throw error;
    return stdout;
  }

  /**
   * Runs an rbd command that writes data to standard output and hands the output to `consume`. The
   * command fails if rbd exits non-zero, stalls for longer than the idle timeout, or `consume` fails; if
   * rbd failed, its error is reported rather than the consumer's (a truncated stream is the symptom).
   * `consume` may stop early by returning; rbd is then killed and its status ignored.
   */
  async stream<T>(
    args: string[],
    consume: (stdout: AsyncIterable<Buffer>) => Promise<T>,
    options: { signal?: AbortSignal } = {},
  ): Promise<T> {
    const what = `rbd ${args.filter((a) => a !== '--no-progress').join(' ')}`;
    options.signal?.throwIfAborted();
    const running = this.start(args, options.signal);
    const idle = this.idleTimeoutMs;
    let timer = setTimeout(() => running.kill(`no data for ${seconds(idle)}`), idle);
    const stdout = running.child.stdout!;
    async function* watched(): AsyncGenerator<Buffer> {
      for await (const chunk of stdout) {
        timer.refresh();
        yield chunk as Buffer;
      }
    }
    let result: T;
    try {
      result = await consume(watched());
    } catch (error) {
      // Did rbd fail (and so cut the stream short)? Give it a moment to exit before blaming the stream.
      const status = await Promise.race([
        running.exit,
        new Promise<null>((resolve) => setTimeout(resolve, 3000, null)),
      ]);
      clearTimeout(timer);
      if (status != null) {
        const failure = this.failure(running, status, what, error);
        if (failure) throw failure;
      }
      stdout.destroy();
      running.kill('consumer');
      await running.exit;
      throw error;
    }
    clearTimeout(timer);
    if (!stdout.readableEnded) {
      // The consumer stopped early on purpose: rbd is not needed any more.
      stdout.destroy();
      running.kill('consumer');
      await running.exit;
      return result;
    }
    timer = setTimeout(
      () => running.kill(`did not exit ${seconds(this.timeoutMs)} after its output ended`),
      this.timeoutMs,
    );
    const status = await running.exit;
    clearTimeout(timer);
    const failure = this.failure(running, status, what);
    if (failure) throw failure;
    return result;
  }

  async info(
    pool: string,
    image: string,
    snapshot?: string | null,
    signal?: AbortSignal,
  ): Promise<RbdImageInfo> {
    const out = await this.run(['info', '--format', 'json', imageSpec(pool, image, snapshot)], { signal });
    const parsed = parseJson(out, 'rbd info') as {
      size?: unknown;
      object_size?: unknown;
      features?: unknown;
    };
    if (typeof parsed.size !== 'number')
      throw new BackyError(
        'SOURCE_FAILED',
        `rbd info ${imageSpec(pool, image, snapshot)}: no size in its output`,
      );
    return {
      size: parsed.size,
      objectSize: typeof parsed.object_size === 'number' ? parsed.object_size : 0,
      features: Array.isArray(parsed.features) ? parsed.features.map(String) : [],
    };
  }

  /** Whether the image exists; other errors (cluster unreachable, permissions) are thrown. */
  async imageExists(pool: string, image: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.info(pool, image, null, signal);
      return true;
    } catch (error) {
      if (error instanceof RbdError && error.notFound) return false;
      throw error;
    }
  }

  async snapCreate(pool: string, image: string, snapshot: string, signal?: AbortSignal): Promise<void> {
    await this.run(['snap', 'create', '--no-progress', imageSpec(pool, image, snapshot)], { signal });
  }

  async snapList(pool: string, image: string, signal?: AbortSignal): Promise<RbdSnapshot[]> {
    const out = await this.run(['snap', 'ls', '--format', 'json', imageSpec(pool, image)], { signal });
    const parsed = parseJson(out, 'rbd snap ls');
    if (!Array.isArray(parsed))
      throw new BackyError('SOURCE_FAILED', `rbd snap ls ${imageSpec(pool, image)}: unexpected output`);
    return parsed.map((s: Record<string, unknown>) => ({
      id: Number(s.id),
      name: String(s.name),
      size: Number(s.size),
      // rbd prints "true"/"false" strings here.
      protected: s.protected === true || s.protected === 'true',
      timestamp: typeof s.timestamp === 'string' ? s.timestamp : undefined,
    }));
  }

  async snapExists(pool: string, image: string, snapshot: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.snapList(pool, image, signal)).some((s) => s.name === snapshot);
  }

  /** Removes a snapshot; throws an RbdError (see `protectedSnapshot`, `notFound`) if rbd refuses. */
  async snapRemove(pool: string, image: string, snapshot: string, signal?: AbortSignal): Promise<void> {
    await this.run(['snap', 'rm', '--no-progress', imageSpec(pool, image, snapshot)], { signal });
  }

  /** Whether this rbd's export-diff knows `--whole-object` (asked once per executable). */
  supportsWholeObject(): Promise<boolean> {
    let known = wholeObjectSupport.get(this.binary);
    if (known == null) {
      known = this.run(['help', 'export-diff'], { timeoutMs: 30_000 }).then(
        (help) => help.includes('--whole-object'),
        () => false,
      );
      wholeObjectSupport.set(this.binary, known);
    }
    return known;
  }

  /** Streams `rbd export-diff [--from-snap FROM] [--whole-object] POOL/IMAGE@SNAP -` into `consume`. */
  async exportDiff<T>(
    args: {
      pool: string;
      image: string;
      snapshot: string;
      fromSnapshot?: string | null;
      wholeObject?: boolean;
      signal?: AbortSignal;
    },
    consume: (stdout: AsyncIterable<Buffer>) => Promise<T>,
  ): Promise<T> {
    const argv = ['export-diff', '--no-progress'];
    if (args.fromSnapshot != null) argv.push('--from-snap', args.fromSnapshot);
    if (args.wholeObject) argv.push('--whole-object');
    argv.push(imageSpec(args.pool, args.image, args.snapshot), '-');
    return this.stream(argv, consume, { signal: args.signal });
  }

  /** Streams the raw image `rbd export POOL/IMAGE@SNAP -` into `consume`, which may stop early. */
  async export<T>(
    args: { pool: string; image: string; snapshot: string; signal?: AbortSignal },
    consume: (stdout: AsyncIterable<Buffer>) => Promise<T>,
  ): Promise<T> {
    return this.stream(
      ['export', '--no-progress', imageSpec(args.pool, args.image, args.snapshot), '-'],
      consume,
      { signal: args.signal },
    );
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new BackyError(
      'SOURCE_FAILED',
      `${what}: output is not JSON (${text.slice(0, 80).replace(/\s+/g, ' ')})`,
      { cause: error },
    );
  }
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}
