import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Archive, Archive as ArchiveClass, BackyError } from '@backy/core';
import type { Logger } from 'pino';
import { commandParseOptions, describeParseError, joinNegativeValues, parseArgsOptions } from './args.js';
import type { Command, CommandContext, GlobalOptions } from './command.js';
import { backupCommand } from './commands/backup.js';
import { checkCommand } from './commands/check.js';
import { completionCommand } from './commands/completion.js';
import { copyCommand } from './commands/copy.js';
import { findCommand } from './commands/find.js';
import { helpCommand } from './commands/help.js';
import { initCommand } from './commands/init.js';
import { keyCommand } from './commands/key.js';
import { nbdServerCommand } from './commands/nbd-server.js';
import { purgeCommand } from './commands/purge.js';
import { restoreCommand } from './commands/restore.js';
import { distrustCommand, expireCommand, forgetCommand, tagsCommand } from './commands/revisions.js';
import { schedulerCommand } from './commands/scheduler.js';
import { statusCommand } from './commands/status.js';
import { upgradeCommand } from './commands/upgrade.js';
import { verifyCommand } from './commands/verify.js';
import { completionScript } from './completion.js';
import { commandHelp, commandOptions, globalHelp } from './help.js';
import { JSON_FORMAT_VERSION, jsonSchemaFiles } from './json-output.js';
import { createLogger } from './logger.js';
import { manPage } from './man.js';
import { createProgressBar } from './progress.js';
import { BACKY_DIR_ENV, EXIT_CODES, EXIT_PIPE_CLOSED, GLOBAL_OPTIONS } from './reference.js';
import { STORE_DRIVERS } from './stores.js';
import { cliVersion } from './version.js';

export type { Command, CommandContext, OptionSpec } from './command.js';
export { loadSource, loadSourceDefinition } from './sources.js';

const COMMANDS: readonly Command[] = [
  initCommand,
  backupCommand,
  statusCommand,
  findCommand,
  restoreCommand,
  verifyCommand,
  copyCommand,
  distrustCommand,
  forgetCommand,
  tagsCommand,
  expireCommand,
  purgeCommand,
  upgradeCommand,
  nbdServerCommand,
  schedulerCommand,
  checkCommand,
  keyCommand,
  helpCommand(() => COMMANDS),
  completionCommand(() => COMMANDS),
];

const GLOBAL_PARSE_OPTIONS = parseArgsOptions(GLOBAL_OPTIONS);

/**
 * The files the package ships beside the code, by their path under dist/: the man page and the shell
 * completions, written by the build from the same definitions as `--help`.
 */
export function shippedFiles(): Record<string, string> {
  return {
    'man/backy.1': manPage(COMMANDS),
    'completions/backy.bash': completionScript('bash', COMMANDS),
    'completions/_backy': completionScript('zsh', COMMANDS),
    'completions/backy.fish': completionScript('fish', COMMANDS),
    ...jsonSchemaFiles(),
  };
}

/** Runs the CLI; returns the exit status. Every error becomes one line on stderr. */
export async function main(
  argv: string[],
  io: { stdout?: NodeJS.WriteStream; stderr?: NodeJS.WriteStream } = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  let logging: ReturnType<typeof createLogger> | null = null;
  let pipeClosed = false;
  // Until the command line is parsed, whether the error should be JSON is read from the raw words.
  let json = wantsJson(argv);
  const onStdoutError = (error: NodeJS.ErrnoException) => {
    // Later writes to the destroyed stream fail too; the first EPIPE is what counts.
    if (error.code === 'EPIPE') pipeClosed = true;
  };
  stdout.on('error', onStdoutError);
  try {
    let globals: ReturnType<typeof parseArgs>;
    try {
      globals = parseArgs({
        args: argv,
        options: GLOBAL_PARSE_OPTIONS,
        allowPositionals: true,
        strict: true,
        tokens: true,
      } as const);
    } catch (error) {
      // Options after the command belong to the command: parse globals only up to the command name.
      globals = parseGlobalsBeforeCommand(argv, error);
    }
    const firstPositional = globals.tokens!.find((t) => t.kind === 'positional');
    const rest = firstPositional ? argv.slice(firstPositional.index + 1) : [];
    const values = globals.values as {
      verbose?: boolean;
      quiet?: boolean;
      logfile?: string;
      backupdir?: string;
      help?: boolean;
      version?: boolean;
    };
    if (values.version) {
      stdout.write(`backy ${cliVersion()}\n`);
      return 0;
    }
    if (!firstPositional) {
      // As backy 2.x: no command prints the usage and succeeds.
      stdout.write(`${globalHelp(COMMANDS)}\n`);
      return 0;
    }
    const name = (firstPositional as { value: string }).value;
    const command = COMMANDS.find((c) => c.name === name);
    if (!command)
      throw new BackyError('USAGE', `unknown command ${JSON.stringify(name)}; see \`backy --help\``);
    if (values.help) {
      stdout.write(`${commandHelp(command)}\n`);
      return 0;
    }
    let parsed: ReturnType<typeof parseArgs>;
    const { options, globals: globalKeys } = commandParseOptions(GLOBAL_OPTIONS, commandOptions(command));
    try {
      parsed = parseArgs({
        args: joinNegativeValues(rest, options),
        options,
        allowPositionals: true,
        strict: true,
      });
    } catch (error) {
      throw new BackyError(
        'USAGE',
        `${command.name}: ${describeParseError(error)}; usage: backy ${command.usage}`,
      );
    }
    // Global options given after the command name join (and override) those given before it.
    const own: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(parsed.values)) {
      if (globalKeys.has(key)) (values as Record<string, unknown>)[key] = value;
      else own[key] = value;
    }
    json = own.json === true;
    if (values.version) {
      stdout.write(`backy ${cliVersion()}\n`);
      return 0;
    }
    if (own.help) {
      stdout.write(`${commandHelp(command)}\n`);
      return 0;
    }
    const [min, max] = command.positionals ?? [0, Number.POSITIVE_INFINITY];
    if (parsed.positionals.length < min || parsed.positionals.length > max) {
      throw new BackyError(
        'USAGE',
        `${command.name}: wrong number of arguments; usage: backy ${command.usage}`,
      );
    }
    const global: GlobalOptions = {
      verbose: values.verbose === true,
      quiet: values.quiet === true,
      logfile: values.logfile ?? null,
      // -b wins over $BACKY_DIR (empty counts as unset), which wins over the current directory.
      baseDir: resolve(values.backupdir ?? (process.env[BACKY_DIR_ENV] || '.')),
    };
    if (global.verbose && global.quiet)
      throw new BackyError('USAGE', '-v and -q exclude each other; give one of them');
    const controller = new AbortController();
    const onSignal = (signal: NodeJS.Signals) => {
      if (controller.signal.aborted) return;
      controller.abort(new BackyError('ABORTED', `interrupted by ${signal}`));
    };
    if (command.abortable) {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    }
    let archive: Archive | null = null;
    const progress = createProgressBar(stderr, { quiet: global.quiet });
    const ensureLogger = (file: string | null): Logger => {
      logging ??= createLogger({
        file: global.logfile ?? file,
        verbose: global.verbose,
        quiet: global.quiet,
        stderr,
        progress,
      });
      return logging.logger;
    };
    const ctx: CommandContext = {
      global,
      values: own as CommandContext['values'],
      positionals: parsed.positionals,
      async openArchive(options = {}) {
        if (archive == null) {
          archive = await ArchiveClass.open(global.baseDir, {
            stores: STORE_DRIVERS,
            onStoreUnreachable: options.offline
              ? (error) =>
                  ctx.warn(
                    `${error.message}; showing the revisions as last copied into ${global.baseDir} (they may be out of date)`,
                  )
              : undefined,
          });
          // An archive that moved is registered with its store at its new place on its next use.
          await archive.refreshRegistration();
        }
        ensureLogger(archive.logPath);
        return archive;
      },
      logger: () => ensureLogger(archive?.logPath ?? null),
      progress,
      signal: controller.signal,
      note: (line: string) => {
        if (!global.quiet) progress.around(() => stderr.write(`${line}\n`));
      },
      warn: (line: string) => {
        progress.around(() => stderr.write(`backy: warning: ${line}\n`));
      },
      stdout,
      stderr,
      print: (line) => stdout.write(`${line}\n`),
      printJson: (value) =>
        stdout.write(`${JSON.stringify({ version: JSON_FORMAT_VERSION, ...(value as object) }, null, 2)}\n`),
    };
    try {
      const status = (await command.run(ctx)) ?? 0;
      if (controller.signal.aborted) return 130;
      // Learn whether the output reached its reader: a failed write reports on a later tick.
      await new Promise<void>((done) => stdout.write('', () => done()));
      return pipeClosed ? EXIT_PIPE_CLOSED : status;
    } finally {
      ctx.progress.finish();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  } catch (error) {
    // A command that stopped only because nobody reads its output any more (restore turns that into
    // its own error: an image cut short is a failure).
    if (pipeClosed && (error as NodeJS.ErrnoException)?.code === 'EPIPE') return EXIT_PIPE_CLOSED;
    return reportError(error, stderr, logging, json);
  } finally {
    (logging as ReturnType<typeof createLogger> | null)?.flush();
    // Errors of writes still queued arrive on a later tick; they must not become uncaught.
    setImmediate(() => stdout.off('error', onStdoutError));
  }
}

function parseGlobalsBeforeCommand(argv: string[], original: unknown): ReturnType<typeof parseArgs> {
  // Find the command name: the first argument that is neither a global option nor its value.
  const withValue = new Set(
    Object.entries(GLOBAL_OPTIONS).flatMap(([name, o]) =>
      o.type === 'string' ? [`--${name}`, ...('short' in o ? [`-${o.short}`] : [])] : [],
    ),
  );
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-') && argv[i] !== '-') {
    i += withValue.has(argv[i]!) ? 2 : 1;
  }
  try {
    const parsed = parseArgs({
      args: argv.slice(0, i + 1),
      options: GLOBAL_PARSE_OPTIONS,
      allowPositionals: true,
      strict: true,
      tokens: true,
    });
    return parsed;
  } catch {
    throw new BackyError('USAGE', `${describeParseError(original)}; see \`backy --help\``);
  }
}

/**
 * Whether the words ask for `--json` before any `--`: for an error met before the command line could be
 * parsed (an unknown option), which a script that asked for JSON must still be able to read.
 */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** An error under `--json`: one line of JSON on stderr (docs/json.md), its last line. */
function jsonError(stderr: NodeJS.WriteStream, code: string, message: string, exitCode: number): number {
  stderr.write(`${JSON.stringify({ version: JSON_FORMAT_VERSION, error: { code, message, exitCode } })}\n`);
  return exitCode;
}

function reportError(
  error: unknown,
  stderr: NodeJS.WriteStream,
  logging: ReturnType<typeof createLogger> | null,
  json: boolean,
): number {
  if (error instanceof BackyError) {
    const exitCode = EXIT_CODES[error.code] ?? 1;
    if (json) jsonError(stderr, error.code, error.message, exitCode);
    else stderr.write(`backy: error: ${error.message}\n`);
    logging?.recordFailure(error, { code: error.code }, error.message);
    return exitCode;
  }
  // Not ours: a bug. Say so in one line and keep the details in the log (and on stderr with -v).
  const message = error instanceof Error ? error.message : String(error);
  if (json) jsonError(stderr, 'INTERNAL', message, 1);
  else stderr.write(`backy: internal error: ${message}\n`);
  logging?.recordFailure(error, {}, 'internal error');
  if (process.env.BACKY_DEBUG) stderr.write(`${(error as Error)?.stack ?? ''}\n`);
  return 1;
}
