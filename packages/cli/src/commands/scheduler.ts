import { realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  Archive,
  BackyError,
  DEFAULT_CENTRAL_CONFIG,
  type LoadedCentralConfig,
  loadCentralConfig,
  resolveGroup,
  sourceOptionsOf,
  validateSourceOptions,
} from '@backy/core';
import type { FleetMember } from '@backy/fleet';
import {
  ChildProcessRunner,
  type NameFilter,
  openLogFile,
  type ReopeningLogFile,
  Scheduler,
} from '@backy/scheduler';
import { readTokenFile, TelnetShell } from '@backy/telnet-shell';
import pino, { type Logger } from 'pino';
import type { Command, OptionSpec } from '../command.js';
import { BACKY_CONFIG_ENV } from '../global-options.js';
import { terminalStream } from '../logger.js';
import { loadSourceDefinition } from '../sources.js';
import { cliVersion } from '../version.js';

/** Checks every job's source options with its source's schema; errors name `jobs.NAME.source.KEY`. */
export async function validateJobSources(loaded: LoadedCentralConfig): Promise<void> {
  for (const [name, job] of Object.entries(loaded.config.jobs)) {
    let definition: Awaited<ReturnType<typeof loadSourceDefinition>>;
    try {
      definition = await loadSourceDefinition(job.source.type);
    } catch (error) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${loaded.path}: jobs.${name}.source.type: ${(error as Error).message}`,
        { cause: error },
      );
    }
    await validateSourceOptions(definition.optionsSchema, sourceOptionsOf(job.source), loaded.path, [
      'jobs',
      name,
      'source',
    ]);
  }
}

/** `-c CONFIG`, the central config, of the scheduler and of check. */
export function centralConfigOption(description: string): OptionSpec {
  return {
    type: 'string',
    short: 'c',
    valueName: 'CONFIG',
    defaultText: `$${BACKY_CONFIG_ENV}, else ${DEFAULT_CENTRAL_CONFIG}`,
    description,
    complete: 'file',
  };
}

/** The central config's absolute path: `-c`, else $BACKY_CONFIG (empty counts as unset), else the default. */
export function centralConfigPath(given: unknown): string {
  return resolve(typeof given === 'string' ? given : process.env[BACKY_CONFIG_ENV] || DEFAULT_CENTRAL_CONFIG);
}

/** The daemon's log: a file that survives rotation, or stderr (readable on a terminal, JSON lines for journald). */
function daemonLogger(
  file: string | null,
  verbose: boolean,
  stderr: NodeJS.WriteStream,
): { logger: Logger; logFile: ReopeningLogFile | null } {
  const level = verbose ? 'debug' : 'info';
  if (file != null) {
    // A log that cannot be written cannot say so itself: a line on stderr, once per failure.
    const logFile = openLogFile(file, {
      onFailure: (error) =>
        stderr.write(
          `backy scheduler: warning: cannot write log file ${file} (${error.code ?? error.message}); lines are lost until it can\n`,
        ),
    });
    return { logger: pino({ level, base: { pid: process.pid } }, logFile.stream), logFile };
  }
  if (stderr.isTTY) return { logger: pino({ level }, terminalStream(stderr, { verbose })), logFile: null };
  return { logger: pino({ level, base: { pid: process.pid } }, stderr), logFile: null };
}

/** The `backy` command the daemon runs for each job: this very binary. */
function backyCommand(): string[] {
  const script = process.argv[1];
  if (script == null) throw new BackyError('USAGE', 'cannot tell which backy binary is running');
  return [process.execPath, realpathSync(script)];
}

export const schedulerCommand: Command = {
  name: 'scheduler',
  summary: 'run the backup daemon for the jobs of the central config (foreground)',
  usage: `scheduler [-c CONFIG] [-l LOGFILE]   (CONFIG default $BACKY_CONFIG, else ${DEFAULT_CENTRAL_CONFIG})`,
  options: {
    config: centralConfigOption('the central config: the jobs, their schedules and archive directories'),
    logfile: {
      type: 'string',
      short: 'l',
      valueName: 'FILE',
      description: "the daemon's log (reopened on SIGHUP)",
      defaultText: 'stderr',
      complete: 'file',
    },
  },
  positionals: [0, 0],
  async run(ctx) {
    const configPath = centralConfigPath(ctx.values.config);
    const logPath = (ctx.values.logfile as string | undefined) ?? ctx.global.logfile;
    const version = cliVersion();
    // Signals that arrive while starting up are handled once the scheduler exists.
    const controller = new AbortController();
    const early = () => controller.abort();
    process.on('SIGTERM', early);
    process.on('SIGINT', early);
    const { logger, logFile } = daemonLogger(
      logPath == null ? null : resolve(logPath),
      ctx.global.verbose,
      ctx.stderr,
    );
    let shell: TelnetShell | null = null;
    let api: { close(): Promise<void> } | null = null;
    let textfile: { write(): Promise<void>; close(): Promise<void> } | null = null;
    const onHup = () => {
      logger.info('SIGHUP: reopening the log and reloading the config');
      logFile?.reopen();
      void scheduler?.reload();
    };
    let scheduler: Scheduler | null = null;
    let fleet: FleetMember | null = null;
    try {
      process.on('SIGHUP', onHup);
      fleet = await startFleet(configPath, logger);
      scheduler = await Scheduler.start({
        ...(fleet != null ? { fleet } : {}),
        configPath,
        logger,
        runner: new ChildProcessRunner({ command: backyCommand(), verbose: ctx.global.verbose }),
        signal: controller.signal,
        validate: validateJobSources,
        onWorkDone: () => void textfile?.write(),
      });
      // The base already names the pid (a second `pid` key would be a duplicate in the record).
      logger.info({ version }, 'backy scheduler running');
      const g = scheduler.config.config.global;
      const s = scheduler;
      // What the telnet shell sees of the daemon, and may ask of it.
      const view = {
        jobs: (filter?: NameFilter) => s.jobs(filter),
        summary: () => s.summary(),
        runJob: (name: string) => s.runJob(name),
        runAll: () => s.runAll(),
        reload: () => s.reload(),
      };
      shell = await startShell(s, view, logger, version);
      api = await startApi(s, logger, version);
      const textfilePath = g['metrics-textfile'];
      if (textfilePath != null) {
        const { MetricsTextfile } = await import('@backy/http-api');
        const writer = new MetricsTextfile({
          source: { jobs: () => s.jobs(), summary: () => s.summary(), version },
          path: () => textfilePath,
          logger: logger.child({ component: 'metrics-textfile' }),
        });
        writer.start();
        textfile = writer;
      }
      const stop = (signal: NodeJS.Signals) => {
        logger.info({ signal }, 'stopping');
        void s.stop();
      };
      process.off('SIGTERM', early);
      process.off('SIGINT', early);
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
      if (controller.signal.aborted) void s.stop();
      await s.done;
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      return 0;
    } catch (error) {
      // On stderr the CLI's one-line message says it all; a log file should record why the daemon ended.
      if (error instanceof BackyError && logFile != null) logger.error({ code: error.code }, error.message);
      throw error;
    } finally {
      process.off('SIGHUP', onHup);
      process.off('SIGTERM', early);
      process.off('SIGINT', early);
      await shell?.close();
      await api?.close();
      // The last state (the jobs as the daemon stopped) for node_exporter.
      await textfile?.write();
      await textfile?.close();
      // After the scheduler released its job locks: the session goes, and the jobs move at once.
      await fleet?.stop();
      logFile?.close();
    }
  },
};

/**
 * Fleet mode when the config has `fleet` (docs/fleet.md): this server's membership, started. A config
 * that cannot be read is left to Scheduler.start, which says what is wrong with it.
 */
async function startFleet(configPath: string, logger: Logger): Promise<FleetMember | null> {
  const loaded = await loadCentralConfig(configPath).catch(() => null);
  const config = loaded?.config.fleet;
  if (config == null) return null;
  const { fleetMemberOf } = await import('@backy/fleet');
  const member = await fleetMemberOf(config, {
    workers: loaded!.config.global['worker-limit'],
    logger: logger.child({ component: 'fleet' }),
  });
  member.start();
  return member;
}

type DaemonView = Pick<Scheduler, 'jobs' | 'summary' | 'runJob' | 'runAll' | 'reload'>;

/** The telnet shell where the config asks for it; null (with a log line) when it cannot listen. */
async function startShell(s: Scheduler, view: DaemonView, logger: Logger, version: string) {
  const g = s.config.config.global;
  try {
    const socket = g['telnet-socket'] ?? join(g['base-dir'], '.shell.sock');
    const group = g['telnet-socket-group'];
    const tokenFile = g['telnet-token-file'];
    return await TelnetShell.listen({
      backend: view,
      logger: logger.child({ component: 'telnet' }),
      version,
      addresses: g['telnet-addrs'],
      port: g['telnet-port'],
      socketPath: socket === false ? undefined : socket,
      socketGid: group == null ? undefined : await resolveGroup(String(group)),
      token: tokenFile == null ? undefined : await readTokenFile(tokenFile),
      insecureTcp: g['telnet-insecure-tcp'] === true,
    });
  } catch (error) {
    // The shell is a convenience: backups go on without it.
    logger.error({ error: (error as Error).message }, 'telnet shell not available');
    return null;
  }
}

/** The HTTP API when the config has `api`; null when it has none or it cannot start (logged). */
async function startApi(s: Scheduler, logger: Logger, version: string) {
  const apiConfig = s.config.config.api;
  if (apiConfig == null) return null;
  try {
    // Loaded only when configured: fastify and prom-client are most of the daemon's start-up otherwise.
    const { ApiServer, schedulerBackend } = await import('@backy/http-api');
    return await ApiServer.start({
      // As `backy tags` opens it: with the store drivers the jobs' archives may name.
      backend: schedulerBackend(s, (dir) =>
        Archive.open(dir, { stores: async (type) => (await import('../stores.js')).STORE_DRIVERS(type) }),
      ),
      config: apiConfig,
      logger: logger.child({ component: 'api' }),
      version,
    });
  } catch (error) {
    // As the shell: backups go on without it, and `backy check` through the API will say so.
    logger.error({ error: (error as Error).message }, 'HTTP API not available');
    return null;
  }
}
