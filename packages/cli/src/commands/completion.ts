import { BackyError } from '@backy/core';
import type { Command } from '../command.js';
import { COMPLETION_SHELLS, completionScript, type Shell } from '../completion.js';
import { manPage } from '../man.js';

/** `backy completion bash|zsh|fish` (and `man`): the scripts the package ships, printed. */
export function completionCommand(commands: () => Promise<readonly Command[]>): Command {
  return {
    name: 'completion',
    summary: `print the shell completion script (${COMPLETION_SHELLS.join(', ')}) or the man page (man)`,
    usage: `completion ${COMPLETION_SHELLS.join('|')}|man   e.g. \`backy completion bash > /etc/bash_completion.d/backy\``,
    positionals: [1, 1],
    completeArguments: [...COMPLETION_SHELLS, 'man'],
    async run(ctx) {
      const [shell] = ctx.positionals as [string];
      if (shell === 'man') {
        ctx.stdout.write(manPage(await commands()));
        return 0;
      }
      if (!(COMPLETION_SHELLS as readonly string[]).includes(shell))
        throw new BackyError(
          'USAGE',
          `completion: unknown shell ${JSON.stringify(shell)}; expected ${COMPLETION_SHELLS.join(', ')} or man`,
        );
      ctx.stdout.write(completionScript(shell as Shell, await commands()));
      return 0;
    },
  };
}
