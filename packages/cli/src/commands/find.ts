import type { Command } from '../command.js';

export const findCommand: Command = {
  name: 'find',
  summary: 'print the ID of a revision (for scripts: backy restore -r "$(backy find -r daily)" …)',
  usage: 'find [-r SPEC]   (default: last)',
  options: { revision: { type: 'string', short: 'r', default: 'last' } },
  positionals: [0, 0],
  async run(ctx) {
    const archive = await ctx.openArchive();
    const rev = await archive.resolveOne(String(ctx.values.revision));
    ctx.print(rev.uuid);
    return 0;
  },
};
