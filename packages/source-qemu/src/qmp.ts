/**
 * A small typed client of the QEMU Machine Protocol (QMP) on a unix socket: the greeting, capability
 * negotiation, commands with ids and a timeout each, and events. See QEMU's docs/interop/qmp-spec.
 */
import { BackyError } from '@backy/core/source';
import { JsonLineSocket, type JsonMessage } from './json-socket.js';

type JsonSocket = JsonLineSocket;

export interface QemuVersion {
  major: number;
  minor: number;
  micro: number;
}

/** An error QEMU answered a command with (`{"error": {"class", "desc"}}`). */
export class QmpError extends BackyError {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
    message: string,
  ) {
    super('SOURCE_FAILED', message);
    this.name = 'QmpError';
  }
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** When QEMU emitted it (ms since the epoch). */
  time: number;
}

export interface QmpConnectOptions {
  signal?: AbortSignal;
  /** Milliseconds for the connection and the greeting (default 10 s). */
  timeoutMs?: number;
  /** Milliseconds each command may take unless it says otherwise (default 30 s). */
  commandTimeoutMs?: number;
}

/**
 * What each command backy uses needs, for "QEMU too old" messages: the first QEMU release that has it in
 * the form backy uses.
 */
export const COMMAND_SINCE: Record<string, string> = {
  'block-export-add': '6.0 (dirty bitmaps on an export)',
  'block-export-del': '5.2',
  'query-block-exports': '5.2',
  'blockdev-backup': '4.2 (filter-node-name)',
  'blockdev-add': '4.2',
  transaction: '4.2',
  'block-dirty-bitmap-add': '4.0 (persistent bitmaps)',
  'block-dirty-bitmap-merge': '4.0',
  'block-dirty-bitmap-enable': '4.0',
  'x-debug-query-block-graph': '4.0',
};

/** The oldest QEMU backy backs up from. */
export const MIN_QEMU: QemuVersion = { major: 6, minor: 0, micro: 0 };

export const versionText = (v: QemuVersion) => `${v.major}.${v.minor}.${v.micro}`;

export function olderThan(a: QemuVersion, b: QemuVersion): boolean {
  if (a.major !== b.major) return a.major < b.major;
  if (a.minor !== b.minor) return a.minor < b.minor;
  return a.micro < b.micro;
}

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class QmpClient {
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly eventListeners = new Set<(event: QmpEvent) => void>();

  private constructor(
    private readonly socket: JsonSocket,
    /** Where QMP is, for messages: "QMP socket /run/vm1.qmp". */
    readonly where: string,
    readonly version: QemuVersion,
    private readonly commandTimeoutMs: number,
  ) {
    socket.onMessage((message) => this.receive(message));
    socket.onClose((error) => {
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new BackyError('SOURCE_FAILED', `${error.message} (during ${p.command})`, { cause: error }));
        this.pending.delete(id);
      }
    });
  }

  /** Connects, reads the greeting and leaves capability negotiation mode (`qmp_capabilities`). */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const where = `QMP socket ${path}`;
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = await JsonLineSocket.connect(path, {
      what: where,
      signal: options.signal,
      timeoutMs,
    }).catch((error: BackyError) => {
      if (/busy/.test(error.message))
        error.message += '; give backy a QMP socket of its own (another -qmp unix:PATH,server=on,wait=off)';
      throw error;
    });
    try {
      const greeting = await firstMessage(
        socket,
        timeoutMs,
        `${where}: no QMP greeting within ${timeoutMs / 1000} s (is it a QMP socket?)`,
      );
      const qmp = greeting.QMP as { version?: { qemu?: QemuVersion } } | undefined;
      const version = qmp?.version?.qemu;
      if (version == null)
        throw new BackyError('SOURCE_UNAVAILABLE', `${where} is not a QMP socket (no QMP greeting)`);
      const client = new QmpClient(socket, where, version, options.commandTimeoutMs ?? 30_000);
      await client.execute('qmp_capabilities');
      return client;
    } catch (error) {
      socket.close();
      throw error;
    }
  }

  /**
   * Runs `command` and resolves to its `return`. QEMU's error answers reject with a QmpError whose
   * message names the command; a command QEMU does not know says which QEMU has it.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    const id = `backy-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new BackyError(
            'SOURCE_FAILED',
            `${this.where}: QEMU did not answer ${command} within ${timeoutMs / 1000} s`,
          ),
        );
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        this.socket.send({ execute: command, ...(args != null ? { arguments: args } : {}), id });
      } catch (error) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(error);
      }
    });
  }

  /** Calls `listener` with every event; returns the function that stops it. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** The first event named `name` whose data `match` accepts, within `timeoutMs`. */
  waitForEvent(
    name: string,
    match: (data: Record<string, unknown>) => boolean,
    timeoutMs: number,
  ): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        stop();
        reject(
          new BackyError('SOURCE_FAILED', `${this.where}: no ${name} event within ${timeoutMs / 1000} s`),
        );
      }, timeoutMs);
      const stop = this.onEvent((event) => {
        if (event.event !== name || !match(event.data)) return;
        clearTimeout(timer);
        stop();
        resolve(event.data);
      });
    });
  }

  get isClosed(): boolean {
    return this.socket.isClosed;
  }

  close(): void {
    this.socket.close();
  }

  private receive(message: JsonMessage): void {
    if (typeof message.event === 'string') {
      const stamp = message.timestamp as { seconds?: number; microseconds?: number } | undefined;
      const event = {
        event: message.event,
        data: (message.data ?? {}) as Record<string, unknown>,
        time: (stamp?.seconds ?? 0) * 1000 + (stamp?.microseconds ?? 0) / 1000,
      };
      for (const listener of [...this.eventListeners]) listener(event);
      return;
    }
    const id = message.id;
    if (typeof id !== 'string') return;
    const p = this.pending.get(id);
    if (p == null) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    const error = message.error as { class?: string; desc?: string } | undefined;
    if (error == null) p.resolve(message.return);
    else p.reject(this.commandError(p.command, error.class ?? 'GenericError', error.desc ?? 'unknown error'));
  }

  private commandError(command: string, errorClass: string, desc: string): QmpError {
    if (errorClass === 'CommandNotFound') {
      const since = COMMAND_SINCE[command];
      return new QmpError(
        command,
        errorClass,
        desc,
        `QEMU ${versionText(this.version)} at ${this.where.replace(/^QMP socket /, '')} is too old: backy needs ${command}${since != null ? ` (QEMU >= ${since})` : ''}`,
      );
    }
    return new QmpError(command, errorClass, desc, `${command}: ${desc}`);
  }
}

function firstMessage(socket: JsonSocket, timeoutMs: number, timeoutMessage: string): Promise<JsonMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      reject(new BackyError('SOURCE_UNAVAILABLE', timeoutMessage));
    }, timeoutMs);
    const stops: (() => void)[] = [];
    const done = () => {
      clearTimeout(timer);
      for (const stop of stops) stop();
    };
    stops.push(
      socket.onMessage((message) => {
        done();
        resolve(message);
      }),
    );
    stops.push(
      socket.onClose((error) => {
        done();
        reject(error);
      }),
    );
  });
}
