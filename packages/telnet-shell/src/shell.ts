import { createServer, type Server, type Socket } from 'node:net';
import { formatDuration, listenUnixSocket, type UnixSocketListener } from '@backy/core';
import type { JobStatus, NameFilter } from '@backy/scheduler';
import type { Logger } from 'pino';
import { RE2JS } from 're2js';
import { type ShellSession, STATE_CHANGING_COMMANDS, tokenMatches } from './auth.js';
import { jobDetailLines } from './job-details.js';
import { renderTable } from './table.js';
import { TelnetDecoder } from './telnet.js';

/** The columns of the `jobs` table; the time columns name their zone (`Last Backup (UTC)`). */
export function jobColumns(timeZone = 'UTC'): string[] {
  return [
    'Job',
    'SLA',
    'SLA overdue',
    'Status',
    `Last Backup (${timeZone})`,
    'Last Tags',
    'Last Dur',
    `Next Backup (${timeZone})`,
    'Next Tags',
    'Last Run',
    `Last Success (${timeZone})`,
  ];
}

export const JOB_COLUMNS = jobColumns();

/** The fields of a job's status (as the scheduler reports it) that the `jobs` table shows. */
export type ShellJob = Pick<
  JobStatus,
  | 'job'
  | 'sla'
  | 'sla_overdue'
  | 'status'
  | 'last_time'
  | 'last_tags'
  | 'last_duration'
  | 'next_time'
  | 'next_tags'
  | 'last_snapshot'
  | 'last_outcome'
  | 'last_reason'
  | 'consecutive_failures'
  | 'last_success'
  | 'progress'
>;

/** What the shell needs from the scheduler: mostly reads, plus starting jobs and reloading. */
export interface ShellBackend {
  jobs(filter?: NameFilter): ShellJob[];
  summary(): {
    jobs: number;
    states: Record<string, number>;
    workerLimit: number;
    busyWorkers: number;
    idleWorkers: number;
  };
  /** `started`, `queued`, `already running`, `unknown job` or `stopping`. */
  runJob(name: string): string;
  /** How many jobs were started or queued. */
  runAll(): number;
  reload(): Promise<
    { ok: true; added: string[]; removed: string[]; changed: string[] } | { ok: false; error: string }
  >;
}

export interface TelnetShellOptions {
  backend: ShellBackend;
  logger: Logger;
  /** Shown in the banner. */
  version: string;
  /** Addresses to listen on (default loopback: `::1`, `127.0.0.1`; none: no TCP). */
  addresses?: readonly string[];
  /**
   * A Unix socket to listen on as well, mode 0600 (0660 with `socketGid`): its permissions decide who
   * connects, and clients there may run every command (default: none).
   */
  socketPath?: string;
  /** The group that may connect to `socketPath` too. */
  socketGid?: number;
  /**
   * On TCP, `run`, `runall` and `reload` need `auth TOKEN` with this token first (default: none, and those
   * commands are refused on TCP).
   */
  token?: string;
  /** Allow `run`, `runall` and `reload` on TCP without a token, as backy 2.x did (default false). */
  insecureTcp?: boolean;
  /** Port (default 6023; 0 picks a free one, the same for every address where possible). */
  port?: number;
  /** Clients served at once; more are turned away (default 64). */
  maxClients?: number;
  /** Idle clients are disconnected after this many milliseconds (default 30 minutes). */
  idleTimeoutMs?: number;
  /** Longest accepted input line in bytes (default 4096). */
  maxLineBytes?: number;
  /** Time zone for the times in `jobs` (default UTC, as `backy status`, `check` and the status file). */
  timeZone?: string;
}

const PROMPT = 'backy> ';
const HELP = [
  'commands:',
  '  jobs [REGEX]   list jobs (whose name matches REGEX, RE2 syntax)',
  '  status         jobs per state, busy and idle workers',
  '  run JOB        start a backup of JOB now',
  '  runall         start a backup of every job now',
  '  reload         read the config file again',
  '  auth TOKEN     allow run, runall and reload on TCP (global.telnet-token-file)',
  '  help           this text',
  '  quit           close the connection',
].join('\n');
/** A client that stops reading is dropped once this much output waits for it. */
const MAX_BUFFERED = 8 * 1024 * 1024;
const MAX_PENDING_LINES = 256;

/** The telnet shell of the scheduler. Works with `telnet` and `nc`; listens on loopback by default. */
export class TelnetShell {
  private readonly options: TelnetShellOptions;
  private readonly servers: Server[] = [];
  private readonly clients = new Set<Socket>();
  private unixSocket: UnixSocketListener | null = null;
  private readonly log: Logger;
  /** Where the shell listens. */
  readonly listening: { address: string; port: number }[] = [];

  private constructor(options: TelnetShellOptions) {
    this.options = options;
    this.log = options.logger;
  }

  /**
   * Listens on every address. An address the host lacks (e.g. `::1` without IPv6) is skipped with a
   * warning; it is an error only when no address could be used.
   */
  static async listen(options: TelnetShellOptions): Promise<TelnetShell> {
    const shell = new TelnetShell(options);
    const addresses = options.addresses ?? ['::1', '127.0.0.1'];
    let port = options.port ?? 6023;
    const failures: string[] = [];
    if (options.socketPath != null) {
      const server = createServer((socket) =>
        shell.accept(socket, { trusted: true, peer: 'unix socket', failures: 0 }),
      );
      server.on('error', (error) => shell.log.error({ err: error }, 'telnet server error'));
      try {
        shell.unixSocket = await listenUnixSocket(server, options.socketPath, { gid: options.socketGid });
        shell.log.info(
          { socket: options.socketPath, mode: shell.unixSocket.mode.toString(8) },
          'telnet shell listening',
        );
      } catch (error) {
        failures.push((error as Error).message);
        shell.log.warn({ err: error }, 'telnet shell cannot listen on its socket');
      }
    }
    if (addresses.length > 0 && options.insecureTcp === true) {
      shell.log.warn('telnet-insecure-tcp: anyone who can connect may run, runall and reload');
    }
    for (const address of addresses) {
      const server = createServer((socket) =>
        shell.accept(socket, {
          trusted: options.insecureTcp === true,
          peer: `${socket.remoteAddress}:${socket.remotePort}`,
          failures: 0,
        }),
      );
      server.on('error', (error) => shell.log.error({ err: error, address }, 'telnet server error'));
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: address, port, exclusive: true }, () => {
            server.off('error', reject);
            resolve();
          });
        });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? String(error);
        failures.push(`${address}:${port}: ${code}`);
        shell.log.warn({ address, port, code }, 'telnet shell cannot listen on this address');
        continue;
      }
      const bound = server.address();
      if (bound != null && typeof bound === 'object') {
        // With port 0, later addresses take the port the first one got.
        port = bound.port;
        shell.listening.push({ address, port: bound.port });
      }
      shell.servers.push(server);
      shell.log.info({ address, port }, 'telnet shell listening');
    }
    if (shell.servers.length === 0 && shell.unixSocket == null) {
      throw new Error(`telnet shell: cannot listen on any address (${failures.join('; ')})`);
    }
    return shell;
  }

  /** Stops listening and disconnects every client. */
  async close(): Promise<void> {
    for (const socket of this.clients) {
      if (socket.writable) socket.end('\r\nbacky is shutting down. Goodbye.\r\n');
      socket.destroySoon();
    }
    const closing = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    if (this.unixSocket != null) closing.push(this.unixSocket.close());
    setTimeout(() => {
      for (const socket of this.clients) socket.destroy();
    }, 1000).unref();
    await Promise.all(closing);
  }

  private accept(socket: Socket, session: ShellSession): void {
    const peer = session.peer;
    socket.on('error', (error) => this.log.debug({ peer, err: error }, 'telnet client error'));
    if (this.clients.size >= (this.options.maxClients ?? 64)) {
      this.log.warn({ peer }, 'telnet client turned away: too many clients');
      socket.end('error: too many clients, try again later\r\n');
      return;
    }
    this.clients.add(socket);
    socket.on('close', () => {
      this.clients.delete(socket);
      this.log.debug({ peer }, 'telnet client disconnected');
    });
    socket.setNoDelay(true);
    socket.setTimeout(this.options.idleTimeoutMs ?? 30 * 60_000, () => {
      this.send(socket, '\nidle timeout. Goodbye.\n');
      socket.end();
    });
    this.log.debug({ peer }, 'telnet client connected');
    this.send(socket, `backy ${this.options.version}\nReady.\n${PROMPT}`, false);

    const decoder = new TelnetDecoder({ maxLineBytes: this.options.maxLineBytes ?? 4096 });
    const pending: string[] = [];
    let busy = false;
    let closed = false;
    const drain = async () => {
      if (busy) return;
      busy = true;
      try {
        for (let line = pending.shift(); line != null && !closed; line = pending.shift()) {
          const { output, quit } = await this.execute(line, session);
          if (closed) break;
          this.send(socket, output + (quit ? '' : PROMPT), false);
          if (quit) {
            closed = true;
            socket.end();
          }
        }
      } catch (error) {
        this.log.error({ peer, err: error }, 'telnet command failed');
        this.send(socket, `error: ${(error as Error).message}\n${PROMPT}`, false);
      } finally {
        busy = false;
      }
      if (pending.length > 0 && !closed) void drain();
    };
    socket.on('data', (chunk: Buffer) => {
      if (closed) return;
      for (const event of decoder.push(chunk)) {
        if (event.type === 'reply') socket.write(event.data);
        else if (event.type === 'line') pending.push(event.text);
        else if (event.type === 'overflow') pending.push('\0overflow');
        else if (event.type === 'interrupt') pending.push('');
      }
      if (pending.length > MAX_PENDING_LINES) {
        this.log.warn({ peer }, 'telnet client sends faster than it reads; disconnecting');
        closed = true;
        socket.destroy();
        return;
      }
      void drain();
    });
    socket.on('end', () => {
      // The client closed its side (nc at end of input): finish what it sent, then close ours.
      const finish = () => (busy || pending.length > 0 ? setTimeout(finish, 10) : socket.end());
      finish();
    });
    socket.on('close', () => {
      closed = true;
    });
  }

  /** Writes text with telnet line ends (CR LF); drops clients that stop reading. */
  private send(socket: Socket, text: string, newline = true): void {
    if (socket.destroyed || !socket.writable) return;
    const body = (newline && !text.endsWith('\n') ? `${text}\n` : text).replace(/\r?\n/g, '\r\n');
    socket.write(body);
    if (socket.writableLength > MAX_BUFFERED) {
      this.log.warn({ peer: socket.remoteAddress }, 'telnet client does not read its output; disconnecting');
      socket.destroy();
    }
  }

  /**
   * Runs one command line; returns the text to send (with a trailing newline) and whether to close. A
   * direct call (no session) is trusted: it comes from inside the process.
   */
  async execute(
    line: string,
    session: ShellSession = { trusted: true, peer: 'local', failures: 0 },
  ): Promise<{ output: string; quit: boolean }> {
    const out = (text: string) => ({ output: text === '' ? '' : `${text}\n`, quit: false });
    if (line === '\0overflow')
      return out(`error: line too long (more than ${this.options.maxLineBytes ?? 4096} bytes)`);
    if (line === '') return out('');
    const [command = '', ...rest] = line.split(/\s+/);
    const argument = line.slice(command.length).trim();
    const backend = this.options.backend;
    const refused = await this.gate(command.toLowerCase(), argument, session);
    if (refused != null) return refused;
    switch (command.toLowerCase()) {
      case 'jobs': {
        let filter: NameFilter | undefined;
        if (argument !== '') {
          try {
            // A client's pattern must not stall the daemon: RE2 matches in linear time, where the
            // backtracking RegExp took 3.1 s for `(a+)+$` on a long job name, 4× more per 2 characters.
            filter = RE2JS.compile(argument);
          } catch (error) {
            return out(
              `error: invalid regular expression: ${(error as Error).message.replace(/^error parsing regexp: /, '')}`,
            );
          }
        }
        return out(this.formatJobs(backend.jobs(filter)));
      }
      case 'status': {
        const s = backend.summary();
        const states = Object.entries(s.states).map(([state, count]) => `  ${state.padEnd(10)} ${count}`);
        return out(
          [
            `jobs: ${s.jobs}`,
            ...states,
            `workers: ${s.busyWorkers} busy, ${s.idleWorkers} idle (limit ${s.workerLimit})`,
          ].join('\n'),
        );
      }
      case 'run': {
        if (rest.length !== 1) return out('error: usage: run JOB');
        const name = rest[0]!;
        const result = backend.runJob(name);
        this.log.info({ job: name, result }, 'run requested in the telnet shell');
        switch (result) {
          case 'started':
            return out(`${name}: started`);
          case 'queued':
            return out(`${name}: queued, waiting for a free worker`);
          case 'already running':
            return out(`${name}: already running`);
          case 'unknown job':
            return out(`error: unknown job ${JSON.stringify(name)}`);
          default:
            return out(`error: ${name}: ${result}`);
        }
      }
      case 'runall': {
        if (argument !== '') return out('error: usage: runall');
        const count = backend.runAll();
        this.log.info({ count }, 'runall requested in the telnet shell');
        return out(`${count} jobs started or queued`);
      }
      case 'reload': {
        if (argument !== '') return out('error: usage: reload');
        this.log.info('reload requested in the telnet shell');
        const result = await backend.reload();
        if (!result.ok) return out(`error: reload rejected, the old config stays in force: ${result.error}`);
        return out(
          `config reloaded: ${result.added.length} added, ${result.removed.length} removed, ${result.changed.length} changed`,
        );
      }
      case 'help':
      case '?':
        return out(HELP);
      case 'quit':
      case 'exit':
        return { output: 'Goodbye.\n', quit: true };
      default: {
        const shown = command.length > 40 ? `${command.slice(0, 40)}…` : command;
        return out(`error: unknown command ${JSON.stringify(shown)}; type help for a list`);
      }
    }
  }

  /**
   * The authentication of TCP clients: answers `auth TOKEN`, and refuses the state-changing commands to
   * a client that has not proved itself; null lets the command run.
   */
  private async gate(
    command: string,
    argument: string,
    session: ShellSession,
  ): Promise<{ output: string; quit: boolean } | null> {
    const out = (text: string, quit = false) => ({ output: `${text}\n`, quit });
    const token = this.options.token;
    const socket = this.options.socketPath;
    if (command === 'auth') {
      if (session.trusted) return out('already allowed to run every command');
      if (token == null) {
        return out(
          `error: no token is configured (global.telnet-token-file)${socket == null ? '' : `; use the Unix socket ${socket}`}`,
        );
      }
      if (tokenMatches(token, argument)) {
        session.trusted = true;
        this.log.info({ peer: session.peer }, 'telnet client authenticated');
        return out('ok: run, runall and reload allowed');
      }
      session.failures++;
      this.log.warn({ peer: session.peer, failures: session.failures }, 'telnet client sent a wrong token');
      // Slows down guessing; only this client's own lines wait.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      if (session.failures >= 3) return out('error: wrong token. Goodbye.', true);
      return out('error: wrong token');
    }
    if (!STATE_CHANGING_COMMANDS.has(command) || session.trusted) return null;
    const how = [
      token == null ? null : 'send "auth TOKEN" first',
      socket == null ? null : `use the Unix socket ${socket}`,
    ].filter((h) => h != null);
    return out(
      `error: ${command} is not allowed here without authentication: ${how.length > 0 ? how.join(', or ') : "set global.telnet-token-file or use the shell's Unix socket (global.telnet-socket)"}`,
    );
  }

  /** The `jobs` table. */
  formatJobs(jobs: readonly ShellJob[]): string {
    const zone = this.options.timeZone ?? 'UTC';
    const rows = jobs.map((j) => [
      j.job,
      j.sla,
      j.sla_overdue > 0 ? formatDuration(j.sla_overdue) : '-',
      j.status,
      formatTime(j.last_time, zone),
      `${j.last_tags ?? '-'}${j.last_snapshot === 'direct' ? ' (crash-consistent)' : ''}`,
      j.last_duration == null ? '-' : formatDuration(j.last_duration),
      formatTime(j.next_time, zone),
      j.next_tags ?? '-',
      formatOutcome(j),
      formatTime(j.last_success ?? null, zone),
    ]);
    const table = renderTable(jobColumns(zone), rows, [
      'left',
      'left',
      'right',
      'left',
      'left',
      'left',
      'right',
      'left',
      'left',
      'left',
      'left',
    ]);
    return [table, ...jobDetailLines(jobs), `${jobs.length} jobs shown`].join('\n');
  }
}

/** `ok`, `failed ×3`, `-` before the first run. */
export function formatOutcome(job: Pick<ShellJob, 'last_outcome' | 'consecutive_failures'>): string {
  if (job.last_outcome == null) return '-';
  const count = job.consecutive_failures ?? 0;
  return count > 1 ? `${job.last_outcome} ×${count}` : job.last_outcome;
}

const formatters = new Map<string | undefined, Intl.DateTimeFormat>();

function formatterFor(timeZone: string | undefined): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (formatter == null) {
    formatter = new Intl.DateTimeFormat('en-CA', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** `2026-01-05 10:00:00` in the given (or local) time zone; `-` for none. */
export function formatTime(iso: string | null, timeZone?: string): string {
  if (iso == null) return '-';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '-';
  const parts = Object.fromEntries(
    formatterFor(timeZone)
      .formatToParts(date)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}
