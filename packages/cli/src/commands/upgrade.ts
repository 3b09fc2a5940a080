import { layoutOf, upgradeArchive } from '@backy/core';
import { type Command, JSON_OPTION } from '../command.js';

export const upgradeCommand: Command = {
  name: 'upgrade',
  summary:
    "convert backy 2.x revisions into the archive's layout, newest first, each verified before its 2.x files go",
  usage: 'upgrade [--dry-run] [--json]',
  options: {
    'dry-run': { type: 'boolean', description: 'list what would be converted, change nothing' },
    json: JSON_OPTION,
  },
  positionals: [0, 0],
  abortable: true,
  async run(ctx) {
    const archive = await ctx.openArchive();
    const dryRun = ctx.values['dry-run'] === true;
    const result = await upgradeArchive(archive, {
      logger: ctx.logger(),
      dryRun,
      signal: ctx.signal,
      onProgress: (done, total) => ctx.progress.update('upgrade', done, total),
    });
    ctx.progress.finish();
    if (ctx.values.json) {
      ctx.printJson({
        dryRun,
        revisions: result.steps.map((s) => ({
          ...s,
          result: dryRun ? 'would be converted' : 'converted',
        })),
        legacyChunksRemoved: result.legacyChunksRemoved,
      });
      return 0;
    }
    for (const step of result.steps) {
      const from = layoutOf({ backend_type: step.from }).title;
      if (step.skipped === 'distrusted') {
        ctx.print(
          `${step.uuid}: distrusted, ${dryRun ? 'would not be converted' : 'not converted'}: its backy 2.x files are kept (\`backy verify -r ${step.uuid}\` trusts it again if it reads completely, then upgrade again; or forget it)`,
        );
        continue;
      }
      ctx.print(
        `${step.uuid}: ${dryRun ? 'would be converted' : 'converted and verified'} (${from} -> ${step.to})`,
      );
    }
    if (result.legacyChunksRemoved > 0)
      ctx.print(
        `${dryRun ? 'would remove' : 'removed'} ${result.legacyChunksRemoved} backy 2.x chunk files no revision uses`,
      );
    if (result.steps.length === 0) ctx.print('no backy 2.x revisions to upgrade');
    return 0;
  },
};
