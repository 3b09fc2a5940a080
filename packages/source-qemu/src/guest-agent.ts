/**
 * The QEMU guest agent around the point in time: `guest-fsfreeze-freeze` (or `-freeze-list` of the
 * configured mount points) right before the QMP transaction and `guest-fsfreeze-thaw` right after. The
 * guest is never left frozen by backy: a freeze that outlasts the timeout is thawed at once (the point
 * in time is then crash consistent), and a thaw that fails fails the backup, so the operator sees it.
 * Without an agent, or when it does not answer, the point in time is crash consistent and the revision
 * says so (`source_info.snapshot_method: direct`, as the flyingcircus source records it).
 */
import { randomInt } from 'node:crypto';
import { BackyError } from '@backy/core/source';
import type { Logger } from 'pino';
import { JsonLineSocket } from './json-socket.js';

export interface FreezeOptions {
  /** The agent's socket. */
  socket: string;
  /** Mount points to freeze; all when absent. */
  mountpoints?: string[];
  /** Milliseconds the agent may take to answer, and the guest may stay frozen. */
  timeoutMs: number;
  logger: Logger;
  /** Called right before the freeze is sent, and once the thaw is confirmed (the run records both). */
  freezing?(frozen: boolean): Promise<void>;
}

export interface FreezeOutcome {
  /** `agent`: file systems were frozen at the point in time; `direct`: crash consistent. */
  method: 'agent' | 'direct';
  reason?:
    | 'no-agent'
    | 'agent-unreachable'
    | 'agent-timeout'
    | 'already-frozen'
    | 'freeze-failed'
    | 'freeze-too-long';
  /** How long the guest was frozen (ms). */
  frozenMs?: number;
}

/** One command to the agent on a fresh connection, with its own timeout. */
class AgentConnection {
  private constructor(private readonly socket: JsonLineSocket) {}

  static async open(path: string, timeoutMs: number): Promise<AgentConnection> {
    const socket = await JsonLineSocket.connect(path, { what: `guest agent ${path}`, timeoutMs });
    const agent = new AgentConnection(socket);
    // guest-sync skips answers a previous client left unread on the channel.
    const id = randomInt(1, 2 ** 31);
    try {
      for (;;) if ((await agent.command('guest-sync', { id }, timeoutMs)) === id) break;
    } catch (error) {
      socket.close();
      throw error;
    }
    return agent;
  }

  command(name: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    const what = this.socket.what;
    return new Promise((resolve, reject) => {
      const stops: (() => void)[] = [];
      const done = () => {
        clearTimeout(timer);
        for (const stop of stops) stop();
      };
      const timer = setTimeout(() => {
        done();
        reject(new BackyError('SOURCE_FAILED', `${what}: no answer to ${name} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      stops.push(
        this.socket.onMessage((message) => {
          done();
          const error = message.error as { desc?: string } | undefined;
          if (error != null) reject(new BackyError('SOURCE_FAILED', `${what}: ${name}: ${error.desc}`));
          else resolve(message.return);
        }),
        this.socket.onClose((error) => {
          done();
          reject(error);
        }),
      );
      this.socket.send({ execute: name, ...(args != null ? { arguments: args } : {}) });
    });
  }

  close(): void {
    this.socket.close();
  }
}

/**
 * Runs `pointInTime` with the guest's file systems frozen, if the agent answers; thaws right after.
 * Resolves to what `pointInTime` returned and how consistent the point in time is.
 */
export async function withFrozenGuest<T>(
  options: FreezeOptions | null,
  pointInTime: () => Promise<T>,
): Promise<{ result: T; outcome: FreezeOutcome }> {
  if (options == null)
    return { result: await pointInTime(), outcome: { method: 'direct', reason: 'no-agent' } };
  const { logger: log, timeoutMs } = options;
  let agent: AgentConnection;
  try {
    agent = await AgentConnection.open(options.socket, timeoutMs);
  } catch (error) {
    const reason = /no answer/.test((error as Error).message) ? 'agent-timeout' : 'agent-unreachable';
    log.warn(
      { err: (error as Error).message },
      'the guest agent does not answer: the point in time is crash consistent',
    );
    return { result: await pointInTime(), outcome: { method: 'direct', reason } };
  }
  try {
    return await frozen(agent, options, pointInTime);
  } finally {
    agent.close();
  }
}

async function frozen<T>(
  agent: AgentConnection,
  options: FreezeOptions,
  pointInTime: () => Promise<T>,
): Promise<{ result: T; outcome: FreezeOutcome }> {
  const { logger: log, timeoutMs, mountpoints } = options;
  let thawed: Promise<void> | null = null;
  const thaw = () => {
    // Once, however many ways lead here; the agent runs commands in order, so it comes after the freeze.
    thawed ??= agent.command('guest-fsfreeze-thaw', undefined, timeoutMs).then(
      async (count) => {
        log.info({ thawed: count }, 'guest file systems thawed');
        await options.freezing?.(false);
      },
      (error: Error) => {
        throw new BackyError(
          'SOURCE_FAILED',
          `guest file systems may still be frozen: ${error.message}; thaw them (guest-fsfreeze-thaw) now`,
          { cause: error },
        );
      },
    );
    return thawed;
  };
  // Frozen by someone else (an admin, another tool's snapshot): neither freeze nor thaw theirs.
  if ((await agent.command('guest-fsfreeze-status', undefined, timeoutMs)) === 'frozen') {
    log.warn(
      'the guest file systems are frozen already, not by this backup: the point in time is crash consistent',
    );
    return { result: await pointInTime(), outcome: { method: 'direct', reason: 'already-frozen' } };
  }
  await options.freezing?.(true);
  const started = Date.now();
  let reason: FreezeOutcome['reason'];
  try {
    const count = await (mountpoints != null
      ? agent.command('guest-fsfreeze-freeze-list', { mountpoints }, timeoutMs)
      : agent.command('guest-fsfreeze-freeze', undefined, timeoutMs));
    log.info({ frozen: count, mountpoints }, 'guest file systems frozen');
  } catch (error) {
    reason = /no answer/.test((error as Error).message) ? 'agent-timeout' : 'freeze-failed';
    log.warn(
      { err: (error as Error).message },
      'freezing the guest failed: the point in time is crash consistent',
    );
    // A freeze that failed half way, or that answers late, must not stay.
    await thaw();
    return { result: await pointInTime(), outcome: { method: 'direct', reason } };
  }
  // Never frozen for longer than the timeout, whatever the point in time does.
  let tooLong = false;
  const watchdog = setTimeout(() => {
    tooLong = true;
    void thaw().catch(() => {});
  }, timeoutMs);
  let result: T;
  try {
    result = await pointInTime();
  } finally {
    clearTimeout(watchdog);
    await thaw();
  }
  const frozenMs = Date.now() - started;
  if (tooLong) {
    log.warn(
      { frozen_ms: frozenMs },
      'the guest was thawed before the point in time was taken: crash consistent',
    );
    return { result, outcome: { method: 'direct', reason: 'freeze-too-long', frozenMs } };
  }
  return { result, outcome: { method: 'agent', frozenMs } };
}

/** Thaws the guest's file systems (`guest-fsfreeze-thaw`); resolves to how many were thawed. */
export async function thawGuest(socket: string, timeoutMs = 10_000): Promise<unknown> {
  const agent = await AgentConnection.open(socket, timeoutMs);
  try {
    return await agent.command('guest-fsfreeze-thaw', undefined, timeoutMs);
  } finally {
    agent.close();
  }
}
