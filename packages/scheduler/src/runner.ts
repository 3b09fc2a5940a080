import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { LOG_FILE } from '@backy/core';

export interface RunResult {
  ok: boolean;
  /** Exit status, or null when the process was killed by a signal or never started. */
  exitCode: number | null;
  /** The signal that ended the process, if any. */
  signal: NodeJS.Signals | null;
  /** The last few KiB of the process's stderr (or why it could not be started). */
  stderr: string;
  durationMs: number;
}

/** A run that could not be made at all (the runner threw): failed, with the reason as its stderr. */
export function failedToRun(error: unknown, durationMs: number): RunResult {
  return { ok: false, exitCode: null, signal: null, stderr: (error as Error).message, durationMs };
}

export interface JobRequest {
  job: string;
  /** The job's archive directory. */
  dir: string;
  /** Aborting terminates the work gracefully (SIGTERM, then SIGKILL after a grace period). */
  signal: AbortSignal;
  /** Hears the work's progress while it runs (about once a second), where the runner can tell it. */
  onProgress?: (progress: RunProgress) => void;
}

/** How far a running backup (or verify) is: what the CLI's progress bar shows, sent to the daemon. */
export interface RunProgress {
  /** `backup`, `verify`, … */
  phase: string;
  /** Bytes done and in all (total 0: not known). */
  done: number;
  total: number;
}

/**
 * The environment variable that asks `backy` to write its progress as JSON lines
 * (`{"phase","done","total"}`) to that file descriptor, as well as to its terminal's bar.
 */
export const PROGRESS_FD_ENV = 'BACKY_PROGRESS_FD';

/** The progress lines of a child's channel, parsed; lines that are not progress are ignored. */
export function parseProgressLine(line: string): RunProgress | null {
  try {
    const p = JSON.parse(line) as Partial<RunProgress>;
    if (typeof p.phase !== 'string' || typeof p.done !== 'number' || typeof p.total !== 'number') return null;
    return { phase: p.phase, done: p.done, total: p.total };
  } catch {
    return null;
  }
}

/** A backup to run. The optional fields are fleet mode's (docs/fleet.md). */
export interface BackupRequest extends JobRequest {
  tags: string[];
  /** The token the backup commits under (`backy backup --fence`). */
  fence?: number;
  /**
   * The newest revision the scheduler knew of when it found the slot due (`none`: no revision): the
   * backup does nothing, exiting EXIT_SUPERSEDED, when the store has a newer one (`--if-newest`).
   */
  ifNewest?: string;
  /** A directory without an archive ID becomes the archive its remote store holds (`--attach`). */
  attach?: boolean;
}

/** How the scheduler gets work done; the default runs the `backy` binary, tests may fake it. */
export interface JobRunner {
  backup(request: BackupRequest): Promise<RunResult>;
  expire(request: JobRequest): Promise<RunResult>;
  purge(request: JobRequest): Promise<RunResult>;
  /** Copies the archive's revisions to the archive directory `target` (`copy-to`). */
  copy(request: JobRequest & { target: string }): Promise<RunResult>;
  /**
   * Verifies the revisions not verified within `outdatedAfter` seconds (`backy verify
   * --outdated-after`), or the revision `revision` alone (`backy verify -r`, whenever it was verified
   * last). Optional: a runner without it runs no verify jobs.
   */
  verify?(request: JobRequest & { outdatedAfter: number; revision?: string }): Promise<RunResult>;
  /** Runs the completion callback `program JOB` with `input` on stdin and `env` added to its environment. */
  callback(
    request: JobRequest & { program: string; input: string; env?: Record<string, string> },
  ): Promise<RunResult>;
}

export interface ChildProcessRunnerOptions {
  /** The `backy` command: e.g. `[process.execPath, '/usr/lib/backy/bin/backy.js']`. */
  command: readonly string[];
  /** Milliseconds between SIGTERM and SIGKILL when work is aborted (default 20 s). */
  killGraceMs?: number;
  /** Environment of the children (default: the daemon's). */
  env?: NodeJS.ProcessEnv;
  /**
   * Runs `backy -v`: the jobs' `backy.log` get debug lines, as the daemon's own log does with -v
   * (default false: info and up, as a `backy` by hand writes).
   */
  verbose?: boolean;
}

const STDERR_TAIL = 4096;

/**
 * Runs each piece of work as a child process of the `backy` binary, so a crash or leak in a backup never
 * takes the daemon down and an operator's manual command does exactly what the daemon does.
 */
export class ChildProcessRunner implements JobRunner {
  readonly command: readonly string[];
  private readonly killGraceMs: number;
  private readonly env: NodeJS.ProcessEnv | undefined;
  private readonly verbose: boolean;

  constructor(options: ChildProcessRunnerOptions) {
    if (options.command.length === 0) throw new TypeError('ChildProcessRunner needs a command');
    this.command = options.command;
    this.killGraceMs = options.killGraceMs ?? 20_000;
    this.env = options.env;
    this.verbose = options.verbose ?? false;
  }

  backup(request: BackupRequest): Promise<RunResult> {
    const fence = request.fence == null ? [] : ['--fence', String(request.fence)];
    const ifNewest = request.ifNewest == null ? [] : ['--if-newest', request.ifNewest];
    return this.backy(request, [
      '-l',
      join(request.dir, LOG_FILE),
      'backup',
      ...fence,
      ...ifNewest,
      ...(request.attach === true ? ['--attach'] : []),
      request.tags.join(','),
    ]);
  }

  expire(request: JobRequest): Promise<RunResult> {
    return this.backy(request, ['-l', join(request.dir, LOG_FILE), 'expire']);
  }

  purge(request: JobRequest): Promise<RunResult> {
    // A shared store's purge waits a little for backups of other archives that hold it.
    return this.backy(request, ['-l', join(request.dir, LOG_FILE), 'purge', '--wait', '10']);
  }

  copy(request: JobRequest & { target: string }): Promise<RunResult> {
    return this.backy(request, ['-l', join(request.dir, LOG_FILE), 'copy', request.target]);
  }

  verify(request: JobRequest & { outdatedAfter: number; revision?: string }): Promise<RunResult> {
    return this.backy(request, [
      '-l',
      join(request.dir, LOG_FILE),
      'verify',
      // One revision asked for is read whenever it was verified last.
      ...(request.revision != null
        ? ['-r', request.revision]
        : ['--outdated-after', String(request.outdatedAfter)]),
    ]);
  }

  callback(
    request: JobRequest & { program: string; input: string; env?: Record<string, string> },
  ): Promise<RunResult> {
    return runProcess([request.program, request.job], {
      signal: request.signal,
      input: request.input,
      killGraceMs: this.killGraceMs,
      env: { ...(this.env ?? process.env), ...request.env },
      cwd: request.dir,
    });
  }

  private backy(request: JobRequest, args: string[]): Promise<RunResult> {
    const verbose = this.verbose ? ['-v'] : [];
    return runProcess([...this.command, ...verbose, '-b', request.dir, ...args], {
      signal: request.signal,
      killGraceMs: this.killGraceMs,
      env: this.env,
      cwd: request.dir,
      onProgress: request.onProgress,
    });
  }
}

export interface RunProcessOptions {
  signal: AbortSignal;
  killGraceMs: number;
  input?: string;
  env?: NodeJS.ProcessEnv | undefined;
  cwd?: string;
  /** Gives the child a progress channel (fd 3, PROGRESS_FD_ENV) and hears each line of it. */
  onProgress?: ((progress: RunProgress) => void) | undefined;
}

/** Reads the child's progress channel line by line; it ends when the child closes it (or exits). */
function listenForProgress(stream: NodeJS.ReadableStream, onProgress: (progress: RunProgress) => void): void {
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('error', () => {});
  stream.on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop()!.slice(-4096);
    for (const line of lines) {
      const progress = parseProgressLine(line);
      if (progress != null) onProgress(progress);
    }
  });
}

/** Runs a process to its end; never rejects. */
export function runProcess(argv: readonly string[], options: RunProcessOptions): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    let stderr = '';
    let settled = false;
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null, extra = '') => {
      if (settled) return;
      settled = true;
      options.signal.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
      const text = (stderr + extra).slice(-STDERR_TAIL).trim();
      resolve({ ok: exitCode === 0, exitCode, signal, stderr: text, durationMs: Date.now() - started });
    };
    let killTimer: NodeJS.Timeout | undefined;
    // A process group of its own: a Ctrl-C at the daemon's terminal must not reach the backups, the
    // daemon decides how they stop.
    const onProgress = options.onProgress;
    const env = options.env ?? process.env;
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: [
        options.input == null ? 'ignore' : 'pipe',
        'ignore',
        'pipe',
        ...(onProgress != null ? ['pipe' as const] : []),
      ],
      detached: true,
      env: onProgress != null ? { ...env, [PROGRESS_FD_ENV]: '3' } : env,
      cwd: options.cwd,
    });
    if (onProgress != null) listenForProgress(child.stdio[3] as NodeJS.ReadableStream, onProgress);
    const onAbort = () => {
      if (child.exitCode != null || child.signalCode != null) return;
      child.kill('SIGTERM');
      // The whole process group: a helper the child started would otherwise keep its stderr open.
      killTimer = setTimeout(() => {
        try {
          if (child.pid != null) process.kill(-child.pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
        // A process stuck in the kernel (a hung device) survives even SIGKILL for a while: give up on
        // it rather than keep the daemon from exiting.
        killTimer = setTimeout(() => {
          child.unref();
          child.stderr!.destroy();
          finish(null, 'SIGKILL', '\n(the process did not exit after SIGKILL)');
        }, 5000);
      }, options.killGraceMs);
    };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-STDERR_TAIL);
    });
    child.on('error', (error) =>
      finish(null, null, `cannot run ${argv[0]}: ${(error as NodeJS.ErrnoException).code ?? error.message}`),
    );
    child.on('close', (code, signal) => finish(code, signal));
    // A background helper left behind may hold stderr open forever: the exit is what counts.
    child.on('exit', (code, signal) => {
      setTimeout(() => {
        child.stderr!.destroy();
        (child.stdio[3] as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined)?.destroy?.();
        finish(code, signal);
      }, 1000).unref();
    });
    if (options.input != null) {
      child.stdin!.on('error', () => {});
      child.stdin!.end(options.input);
    }
    if (options.signal.aborted) onAbort();
    else options.signal.addEventListener('abort', onAbort, { once: true });
  });
}
