// @backy/cli's API: the command contract and the source loader, for tools that embed the CLI or test a
// source plugin as the CLI loads it; `main` runs the CLI as the binary does.
export type { Command, CommandContext, OptionSpec } from './command.js';
export { main, shippedFiles } from './main.js';
export { loadSource, loadSourceDefinition } from './sources.js';
