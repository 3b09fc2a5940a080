import type { Command } from '../command.js';

/**
 * Every command, loaded when it runs: a command's module and what it imports (the archive code, the
 * scheduler, the NBD server, cli-table3) cost start-up time only to the command that needs them, and
 * `backy --version` loads none of them. The order is the one of `backy --help`.
 */
const LOADERS: Record<string, () => Promise<Command>> = {
  init: async () => (await import('./init.js')).initCommand,
  backup: async () => (await import('./backup.js')).backupCommand,
  status: async () => (await import('./status.js')).statusCommand,
  find: async () => (await import('./find.js')).findCommand,
  restore: async () => (await import('./restore.js')).restoreCommand,
  verify: async () => (await import('./verify.js')).verifyCommand,
  copy: async () => (await import('./copy.js')).copyCommand,
  distrust: async () => (await import('./revisions.js')).distrustCommand,
  forget: async () => (await import('./revisions.js')).forgetCommand,
  tags: async () => (await import('./revisions.js')).tagsCommand,
  protect: async () => (await import('./protect.js')).protectCommand,
  unprotect: async () => (await import('./protect.js')).unprotectCommand,
  expire: async () => (await import('./revisions.js')).expireCommand,
  purge: async () => (await import('./purge.js')).purgeCommand,
  upgrade: async () => (await import('./upgrade.js')).upgradeCommand,
  'nbd-server': async () => (await import('./nbd-server.js')).nbdServerCommand,
  scheduler: async () => (await import('./scheduler.js')).schedulerCommand,
  check: async () => (await import('./check.js')).checkCommand,
  jobs: async () => (await import('./jobs.js')).jobsCommand,
  run: async () => (await import('./jobs.js')).runJobCommand,
  key: async () => (await import('./key.js')).keyCommand,
  help: async () => (await import('./help.js')).helpCommand(loadAllCommands, Object.keys(LOADERS)),
  completion: async () => (await import('./completion.js')).completionCommand(loadAllCommands),
};

/** The command of this name, or null when there is none. */
export function loadCommand(name: string): Promise<Command> | null {
  return Object.hasOwn(LOADERS, name) ? LOADERS[name]!() : null;
}

/** All commands, for the texts that list them (`--help`, the man page, the completions). */
export function loadAllCommands(): Promise<readonly Command[]> {
  return Promise.all(Object.values(LOADERS).map((load) => load()));
}
