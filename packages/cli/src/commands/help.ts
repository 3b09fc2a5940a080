import { BackyError } from '@backy/core';
import type { Command } from '../command.js';
import { commandHelp, globalHelp, HELP_TOPICS } from '../help.js';

/** `backy help [COMMAND|TOPIC]`: the same texts as `--help`, and the reference pages. */
export function helpCommand(commands: () => Promise<readonly Command[]>, names: readonly string[]): Command {
  return {
    name: 'help',
    summary: `help on a command, or on ${Object.keys(HELP_TOPICS).join(', ')}`,
    usage: `help [COMMAND|${Object.keys(HELP_TOPICS).join('|')}]`,
    positionals: [0, 1],
    completeArguments: [...names, ...Object.keys(HELP_TOPICS)],
    async run(ctx) {
      const [name] = ctx.positionals;
      if (name == null) {
        ctx.print(globalHelp(await commands()));
        return 0;
      }
      const topic = Object.hasOwn(HELP_TOPICS, name) ? HELP_TOPICS[name] : undefined;
      if (topic != null) {
        ctx.print(topic.text());
        return 0;
      }
      const command = (await commands()).find((c) => c.name === name);
      if (command == null)
        throw new BackyError(
          'USAGE',
          `help: no command or topic ${JSON.stringify(name)}; topics: ${Object.keys(HELP_TOPICS).join(', ')}`,
        );
      ctx.print(commandHelp(command));
      return 0;
    },
  };
}
