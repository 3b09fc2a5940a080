import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Archive } from '@backy/core';
import type { Logger } from 'pino';
import { commandParseOptions, describeParseError, joinNegativeValues, parseArgsOptions } from './args.js';
import {
  type Command,
  type CommandContext,
  commandOptions,
  type GlobalOptions,
  JSON_FORMAT_VERSION,
} from './command.js';
import { loadAllCommands, loadCommand } from './commands/index.js';
import { BACKY_DIR_ENV, EXIT_CODES, EXIT_PIPE_CLOSED, GLOBAL_OPTIONS } from './global-options.js';
import type { CliLogging } from './logger.js';
import { cliVersion } from './version.js';

// The `backy` binary's entry (bin/backy.js imports this module, not the package's API in index.ts,
// which re-exports the source loader and with it @backy/core). Only argument parsing is imported up
// front: @backy/core, the logger (pino), the help texts and every command's module are imported when
// needed (see commands/index.ts), so that `backy --version` costs little more than starting Node, and a
// command loads its own dependencies and no other's.

const GLOBAL_PARSE_OPTIONS = parseArgsOptions(GLOBAL_OPTIONS);

type GlobalValues = {
  verbose?: boolean;
  quiet?: boolean;
  logfile?: string;
  backupdir?: string;
  help?: boolean;
  version?: boolean;
};

/** A usage error (exit status 2); @backy/core, which defines the error class, is loaded for it. */
async function usageError(message: string): Promise<Error> {
  const { BackyError } = await import('@backy/core');
  return new BackyError('USAGE', message);
}

/**
 * The files the package ships beside the code, by their path under dist/: the man page and the shell
 * completions, written by the build from the same definitions as `--help`.
 */
export async function shippedFiles(): Promise<Record<string, string>> {
  const [commands, { manPage }, { completionScript }, { jsonSchemaFiles }] = await Promise.all([
    loadAllCommands(),
    import('./man.js'),
    import('./completion.js'),
    import('./json-output.js'),
  ]);
  return {
    'man/backy.1': manPage(commands),
    'completions/backy.bash': completionScript('bash', commands),
    'completions/_backy': completionScript('zsh', commands),
    'completions/backy.fish': completionScript('fish', commands),
    ...jsonSchemaFiles(),
  };
}

/** What `main` shares with the command it runs and with its error report. */
interface Session {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  logging: CliLogging | null;
  /** The archive a command opened: its backy.log receives the record of a failure. */
  archive: Archive | null;
  pipeClosed: boolean;
  /** Whether an error is reported as JSON (`--json`). */
  json: boolean;
  /** Makes the logger on first use (pino is loaded then); null until a command runs. */
  ensureLogger: ((file: string | null) => Logger) | null;
}

/** Runs the CLI; returns the exit status. Every error becomes one line on stderr. */
export async function main(
  argv: string[],
  io: { stdout?: NodeJS.WriteStream; stderr?: NodeJS.WriteStream } = {},
): Promise<number> {
  const session: Session = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    logging: null,
    archive: null,
    pipeClosed: false,
    // Until the command line is parsed, whether the error should be JSON is read from the raw words.
    json: wantsJson(argv),
    ensureLogger: null,
  };
  const { stdout } = session;
  const onStdoutError = (error: NodeJS.ErrnoException) => {
    // Later writes to the destroyed stream fail too; the first EPIPE is what counts.
    if (error.code === 'EPIPE') session.pipeClosed = true;
  };
  stdout.on('error', onStdoutError);
  try {
    return await parseAndRun(argv, session);
  } catch (error) {
    // A command that stopped only because nobody reads its output any more (restore turns that into
    // its own error: an image cut short is a failure).
    if (session.pipeClosed && (error as NodeJS.ErrnoException)?.code === 'EPIPE') return EXIT_PIPE_CLOSED;
    // A failure after the archive was opened goes into its backy.log, as every record of the command.
    if (session.archive != null) session.ensureLogger?.(session.archive.logPath);
    return await reportError(error, session);
  } finally {
    session.logging?.flush();
    // Errors of writes still queued arrive on a later tick; they must not become uncaught.
    setImmediate(() => stdout.off('error', onStdoutError));
  }
}

/** Parses the command line and runs its command (or prints the version or a help text). */
async function parseAndRun(argv: string[], session: Session): Promise<number> {
  const { stdout } = session;
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
    const before = parseGlobalsBeforeCommand(argv);
    if (before == null) throw await usageError(`${describeParseError(error)}; see \`backy --help\``);
    globals = before;
  }
  const firstPositional = globals.tokens!.find((t) => t.kind === 'positional');
  const rest = firstPositional ? argv.slice(firstPositional.index + 1) : [];
  const values = globals.values as GlobalValues;
  if (values.version) {
    stdout.write(`backy ${cliVersion()}\n`);
    return 0;
  }
  if (!firstPositional) {
    // As backy 2.x: no command prints the usage and succeeds.
    const { globalHelp } = await import('./help.js');
    stdout.write(`${globalHelp(await loadAllCommands())}\n`);
    return 0;
  }
  const name = (firstPositional as { value: string }).value;
  const command = await loadCommand(name);
  if (command == null)
    throw await usageError(`unknown command ${JSON.stringify(name)}; see \`backy --help\``);
  if (values.help) return printCommandHelp(command, stdout);
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
    throw await usageError(`${command.name}: ${describeParseError(error)}; usage: backy ${command.usage}`);
  }
  // Global options given after the command name join (and override) those given before it.
  const own: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed.values)) {
    if (globalKeys.has(key)) (values as Record<string, unknown>)[key] = value;
    else own[key] = value;
  }
  session.json = own.json === true;
  if (values.version) {
    stdout.write(`backy ${cliVersion()}\n`);
    return 0;
  }
  if (own.help) return printCommandHelp(command, stdout);
  const [min, max] = command.positionals ?? [0, Number.POSITIVE_INFINITY];
  if (parsed.positionals.length < min || parsed.positionals.length > max)
    throw await usageError(`${command.name}: wrong number of arguments; usage: backy ${command.usage}`);
  const global: GlobalOptions = {
    verbose: values.verbose === true,
    quiet: values.quiet === true,
    logfile: values.logfile ?? null,
    // -b wins over $BACKY_DIR (empty counts as unset), which wins over the current directory.
    baseDir: resolve(values.backupdir ?? (process.env[BACKY_DIR_ENV] || '.')),
  };
  if (global.verbose && global.quiet)
    throw await usageError('-v and -q exclude each other; give one of them');
  return runCommand(command, global, own, parsed.positionals, session);
}

async function printCommandHelp(command: Command, stdout: NodeJS.WriteStream): Promise<number> {
  const { commandHelp } = await import('./help.js');
  stdout.write(`${commandHelp(command)}\n`);
  return 0;
}

/** Runs a command with its context: the archive, the logger, the progress bar, the output. */
async function runCommand(
  command: Command,
  global: GlobalOptions,
  values: Record<string, unknown>,
  positionals: string[],
  session: Session,
): Promise<number> {
  const { stdout, stderr } = session;
  const [{ Archive, BackyError }, { createLogger }, { createProgressBar }, { withProgressChannel }] =
    await Promise.all([
      import('@backy/core'),
      import('./logger.js'),
      import('./progress.js'),
      import('./progress-channel.js'),
    ]);
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) return;
    controller.abort(new BackyError('ABORTED', `interrupted by ${signal}`));
  };
  if (command.abortable) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  const progress = withProgressChannel(createProgressBar(stderr, { quiet: global.quiet }));
  const ensureLogger = (file: string | null): Logger => {
    session.logging ??= createLogger({
      file: global.logfile ?? file,
      verbose: global.verbose,
      quiet: global.quiet,
      stderr,
      progress,
    });
    return session.logging.logger;
  };
  session.ensureLogger = ensureLogger;
  const ctx: CommandContext = {
    global,
    values: values as CommandContext['values'],
    positionals,
    async openArchive(options = {}) {
      if (session.archive == null) {
        const archive = await Archive.open(global.baseDir, {
          // The store loader (and through it @backy/core/store) loads with the first archive opened.
          stores: async (type) => (await import('./stores.js')).STORE_DRIVERS(type),
          onStoreUnreachable: options.offline
            ? (error) =>
                ctx.warn(
                  `${error.message}; showing the revisions as last copied into ${global.baseDir} (they may be out of date)`,
                )
            : undefined,
          admin: options.admin === true,
          attachIfNew: options.attach === true,
        });
        session.archive = archive;
        // An archive that moved is registered with its store at its new place on its next use.
        await archive.refreshRegistration();
      }
      // The logger itself is made when first used (a command that logs nothing does not load pino).
      return session.archive;
    },
    logger: () => ensureLogger(session.archive?.logPath ?? null),
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
    return session.pipeClosed ? EXIT_PIPE_CLOSED : status;
  } finally {
    ctx.progress.finish();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The global options before the command name, or null when even those do not parse. */
function parseGlobalsBeforeCommand(argv: string[]): ReturnType<typeof parseArgs> | null {
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
    return parseArgs({
      args: argv.slice(0, i + 1),
      options: GLOBAL_PARSE_OPTIONS,
      allowPositionals: true,
      strict: true,
      tokens: true,
    });
  } catch {
    return null;
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

async function reportError(error: unknown, session: Session): Promise<number> {
  const { stderr, logging, json } = session;
  // Loaded already when a command ran; only a usage error met before that loads it here.
  const { BackyError } = await import('@backy/core');
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
