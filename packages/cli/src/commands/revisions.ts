import { type Archive, BackyError, expireArchive, type Revision, tagNameSchema } from '@backy/core';
import type { Command, CommandContext } from '../command.js';

/**
 * Runs `work` on the revisions `spec` names, holding the archive's backup lock so no backup changes the
 * revision list meanwhile. A spec that matches nothing is an error.
 */
async function withRevisions(
  ctx: CommandContext,
  spec: unknown,
  work: (archive: Archive, revisions: Revision[]) => Promise<void>,
): Promise<number> {
  const archive = await ctx.openArchive();
  const lock = await archive.lockBackup();
  try {
    const revisions = await archive.resolve(String(spec));
    if (revisions.length === 0) {
      throw new BackyError('REVISION_NOT_FOUND', `revision ${JSON.stringify(spec)}: no revision matches`);
    }
    await work(archive, revisions);
    return 0;
  } finally {
    await lock.release();
  }
}

export const distrustCommand: Command = {
  name: 'distrust',
  summary: 'mark revisions as distrusted (the next backup then rewrites every chunk)',
  usage: 'distrust [-r SPEC]   (default: all)',
  options: { revision: { type: 'string', short: 'r', default: 'all' } },
  positionals: [0, 0],
  async run(ctx) {
    return withRevisions(ctx, ctx.values.revision, async (archive, revisions) => {
      for (const rev of revisions) {
        const done = await archive.updateRevision(rev.uuid, (current) => ({
          ...current,
          trust: 'distrusted',
        }));
        if (done == null) {
          ctx.print(`${rev.uuid}: no longer exists`);
          continue;
        }
        ctx.logger().info({ revision: rev.uuid }, 'revision distrusted');
        ctx.print(`${rev.uuid}: distrusted`);
      }
    });
  },
};

export const forgetCommand: Command = {
  name: 'forget',
  summary: 'delete revisions (their data goes at the next purge)',
  usage: 'forget -r SPEC',
  options: { revision: { type: 'string', short: 'r' } },
  positionals: [0, 0],
  async run(ctx) {
    if (ctx.values.revision == null)
      throw new BackyError('USAGE', 'forget needs -r SPEC naming the revisions to delete');
    return withRevisions(ctx, ctx.values.revision, async (archive, revisions) => {
      for (const rev of revisions) {
        await archive.deleteRevision(rev.uuid);
        ctx.logger().info({ revision: rev.uuid }, 'revision forgotten');
        ctx.print(`${rev.uuid}: forgotten`);
      }
    });
  },
};

export const tagsCommand: Command = {
  name: 'tags',
  summary: 'set, add or remove tags of revisions',
  usage: 'tags {set,add,remove} -r SPEC TAGS   (comma-separated)',
  options: { revision: { type: 'string', short: 'r' }, force: { type: 'boolean', short: 'f' } },
  positionals: [2, 2],
  async run(ctx) {
    const [action, list] = ctx.positionals as [string, string];
    if (!['set', 'add', 'remove'].includes(action))
      throw new BackyError(
        'USAGE',
        `tags: unknown action ${JSON.stringify(action)} (use set, add or remove)`,
      );
    if (ctx.values.revision == null) throw new BackyError('USAGE', 'tags needs -r SPEC');
    const tags = list
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    for (const tag of tags) {
      const ok = tagNameSchema.safeParse(tag);
      if (!ok.success)
        throw new BackyError('USAGE', `invalid tag ${JSON.stringify(tag)}: ${ok.error.issues[0]?.message}`);
    }
    return withRevisions(ctx, ctx.values.revision, async (archive, revisions) => {
      for (const rev of revisions) {
        const changeTags = (current: string[]) =>
          action === 'set'
            ? tags
            : action === 'add'
              ? [...new Set([...current, ...tags])]
              : current.filter((t) => !tags.includes(t));
        const done = await archive.updateRevision(rev.uuid, (current) => ({
          ...current,
          tags: changeTags(current.tags),
        }));
        if (done == null) {
          ctx.print(`${rev.uuid}: no longer exists`);
          continue;
        }
        ctx.print(`${rev.uuid}: ${done.tags.join(',') || '(no tags; removed at the next expire)'}`);
      }
    });
  },
};

export const expireCommand: Command = {
  name: 'expire',
  summary: "apply the schedule's keep rules now",
  usage: 'expire',
  positionals: [0, 0],
  async run(ctx) {
    const archive = await ctx.openArchive();
    const actions = await expireArchive(archive, { logger: ctx.logger() });
    for (const a of actions) {
      ctx.print(a.remove ? `${a.uuid}: removed` : `${a.uuid}: tags ${a.removeTags.join(',')} expired`);
    }
    if (actions.length === 0) ctx.print('nothing to expire');
    return 0;
  },
};
