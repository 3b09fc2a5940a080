import {
  type Archive,
  BackyError,
  expireArchive,
  isProtected,
  isRetained,
  type Revision,
  tagNameSchema,
  unscheduledLegacyWarning,
} from '@backy/core';
import { type Command, type CommandContext, JSON_OPTION, revisionOption } from '../command.js';
import { confirm, selectsSet } from '../confirm.js';

/**
 * Runs `work` on the revisions `spec` names, holding the archive's backup lock so no backup changes the
 * revision list meanwhile. A spec that matches nothing is an error.
 */
export async function withRevisions(
  ctx: CommandContext,
  spec: unknown,
  work: (archive: Archive, revisions: Revision[]) => Promise<void>,
  options: { admin?: boolean } = {},
): Promise<number> {
  const archive = await ctx.openArchive(options);
  const lock = await archive.lockBackup();
  try {
    const revisions = await archive.resolve(String(spec));
    if (revisions.length === 0) {
      throw new BackyError('REVISION_NOT_FOUND', `revision ${JSON.stringify(spec)}: no revision matches`);
    }
    // A remote store's writer lease that lapsed meanwhile (a stalled process) lets no change through.
    await lock.refresh?.();
    lock.assertHeld?.();
    await work(archive, revisions);
    return 0;
  } finally {
    await lock.release();
  }
}

/**
 * Like `withRevisions`, and with `dryRun` without the lock: nothing changes, so it works while a
 * backup runs.
 */
export async function selectRevisions(
  ctx: CommandContext,
  spec: unknown,
  dryRun: boolean,
  work: (archive: Archive, revisions: Revision[]) => Promise<void>,
): Promise<number> {
  if (!dryRun) return withRevisions(ctx, spec, work);
  const archive = await ctx.openArchive();
  const revisions = await archive.resolve(String(spec));
  if (revisions.length === 0)
    throw new BackyError('REVISION_NOT_FOUND', `revision ${JSON.stringify(spec)}: no revision matches`);
  await work(archive, revisions);
  return 0;
}

/**
 * A change to more than one revision (`-r all`, `tag:daily`, a date range) asks first on a terminal
 * and needs --force without one: `tags set -r all` once rewrote every revision's tags unasked.
 */
export async function confirmSet(
  ctx: CommandContext,
  archive: Archive,
  what: string,
  count: number,
): Promise<void> {
  if (count <= 1 || ctx.values.force === true) return;
  await confirm(
    ctx.stderr,
    `${what} changes ${count} revisions of ${archive.path}; go on?`,
    `${what} changes ${count} revisions; add --force to change them (--dry-run lists them)`,
  );
}

export const DRY_RUN_OPTION = {
  type: 'boolean',
  short: 'n',
  description: 'list what would change, change nothing',
} as const;

export const SET_FORCE_OPTION = {
  type: 'boolean',
  short: 'f',
  description: 'change more than one revision without asking (needed without a terminal)',
} as const;

export const distrustCommand: Command = {
  name: 'distrust',
  summary: 'mark revisions as distrusted (the next backup then rewrites every chunk)',
  usage:
    'distrust [-r SPEC] [--from YYYY-MM-DD] [--until YYYY-MM-DD] [--dry-run] [--force] [--json]   (default: all; dates in UTC, inclusive; more than one revision needs a yes or --force)',
  options: {
    revision: revisionOption('the revisions to distrust', 'all'),
    from: {
      type: 'string',
      valueName: 'YYYY-MM-DD',
      description: 'only revisions made on this day (UTC) or later',
    },
    until: {
      type: 'string',
      valueName: 'YYYY-MM-DD',
      description: 'only revisions made on this day (UTC) or earlier',
    },
    'dry-run': DRY_RUN_OPTION,
    force: SET_FORCE_OPTION,
    json: JSON_OPTION,
  },
  positionals: [0, 0],
  async run(ctx) {
    const from = dayStart(ctx.values.from as string | undefined, '--from');
    const untilDay = dayStart(ctx.values.until as string | undefined, '--until');
    const until = untilDay == null ? null : untilDay + 86_400_000;
    if (from != null && until != null && from >= until)
      throw new BackyError(
        'USAGE',
        `distrust: --from ${ctx.values.from} is after --until ${ctx.values.until}`,
      );
    const dryRun = ctx.values['dry-run'] === true;
    const json = ctx.values.json === true;
    return selectRevisions(ctx, ctx.values.revision, dryRun, async (archive, all) => {
      const revisions = all.filter((r) => {
        const t = Date.parse(r.timestamp);
        return (from == null || t >= from) && (until == null || t < until);
      });
      if (revisions.length === 0 && !json) ctx.print('no revision in that time range');
      if (!dryRun)
        await confirmSet(ctx, archive, `distrust -r ${String(ctx.values.revision)}`, revisions.length);
      const results: ReturnType<typeof changedJson>[] = [];
      for (const rev of revisions) {
        if (dryRun) {
          results.push(changedJson(rev, 'would be distrusted'));
          if (!json) ctx.print(`${rev.uuid}: would be distrusted (${describe(rev)}; now ${rev.trust})`);
          continue;
        }
        const done = await archive.updateRevision(rev.uuid, (current) => ({
          ...current,
          trust: 'distrusted',
        }));
        if (done == null) {
          results.push(changedJson(rev, 'gone'));
          if (!json) ctx.print(`${rev.uuid}: no longer exists`);
          continue;
        }
        ctx.logger().info({ revision: rev.uuid }, 'revision distrusted');
        results.push(changedJson(done, 'distrusted'));
        if (!json) ctx.print(`${rev.uuid}: distrusted`);
      }
      if (json) ctx.printJson({ dryRun, revisions: results });
    });
  },
};

export const forgetCommand: Command = {
  name: 'forget',
  summary: 'delete revisions (their data goes at the next purge)',
  usage:
    'forget -r SPEC [--dry-run] [--force] [--json]   (a SPEC naming a set, e.g. all or tag:daily, needs --force)',
  options: {
    revision: { ...revisionOption('the revisions to delete'), defaultText: 'none: -r is required' },
    'dry-run': { type: 'boolean', short: 'n', description: 'list what would be forgotten, change nothing' },
    force: {
      type: 'boolean',
      short: 'f',
      description: 'delete a set of revisions (all, tag:, trust:, or several) without asking',
    },
    json: JSON_OPTION,
  },
  positionals: [0, 0],
  async run(ctx) {
    if (ctx.values.revision == null)
      throw new BackyError('USAGE', 'forget needs -r SPEC naming the revisions to delete');
    const spec = String(ctx.values.revision);
    if (ctx.values['dry-run']) {
      // Nothing changes: no lock, so it works while a backup runs.
      const archive = await ctx.openArchive();
      const revisions = await archive.resolve(spec);
      if (revisions.length === 0)
        throw new BackyError('REVISION_NOT_FOUND', `revision ${JSON.stringify(spec)}: no revision matches`);
      if (ctx.values.json) {
        ctx.printJson({ dryRun: true, revisions: revisions.map((r) => forgetJson(r, 'would be forgotten')) });
        return 0;
      }
      for (const rev of revisions) ctx.print(`${rev.uuid}: would be forgotten (${describe(rev)})`);
      return 0;
    }
    return withRevisions(
      ctx,
      spec,
      async (archive, revisions) => {
        // All or nothing: a set that includes a protected revision deletes none of them.
        const kept = revisions.filter(isProtected).map((r) => r.uuid);
        if (kept.length > 0)
          throw new BackyError(
            'REVISION_PROTECTED',
            `forget -r ${spec}: ${kept.length === 1 ? 'revision' : 'revisions'} ${kept.join(', ')} ${kept.length === 1 ? 'is' : 'are'} protected; nothing was forgotten (\`backy unprotect\` first, or choose others)`,
          );
        const retained = revisions.filter((r) => isRetained(r));
        if (retained.length > 0)
          throw new BackyError(
            'RETAINED',
            `forget -r ${spec}: revision ${retained[0]!.uuid} is retained by the store's Object Lock until ${retained[0]!.retention!.until}${retained.length > 1 ? ` (and ${retained.length - 1} more)` : ''}; nothing was forgotten`,
          );
        if (selectsSet(spec, revisions.length) && ctx.values.force !== true) {
          const what = `forget -r ${spec} selects ${revisions.length} revision${revisions.length === 1 ? '' : 's'}`;
          await confirm(
            ctx.stderr,
            `${what} of ${archive.path}; delete ${revisions.length === 1 ? 'it' : 'them'}?`,
            `${what}; add --force to delete them (--dry-run lists them)`,
          );
        }
        for (const rev of revisions) {
          await archive.deleteRevision(rev.uuid);
          ctx.logger().info({ revision: rev.uuid }, 'revision forgotten');
          if (!ctx.values.json) ctx.print(`${rev.uuid}: forgotten`);
        }
        if (ctx.values.json)
          ctx.printJson({ dryRun: false, revisions: revisions.map((r) => forgetJson(r, 'forgotten')) });
      },
      { admin: true },
    );
  },
};

/** A revision as `forget --json` lists it (docs/json.md). */
function forgetJson(rev: Revision, result: 'forgotten' | 'would be forgotten') {
  return changedJson(rev, result);
}

/** A revision a command changed (or would) as `--json` lists it: `forget`, `distrust`, `tags`. */
export function changedJson<R extends string>(rev: Pick<Revision, 'uuid' | 'timestamp' | 'tags'>, result: R) {
  return { uuid: rev.uuid, timestamp: rev.timestamp, tags: rev.tags, result };
}

/** A revision in a few words: when, and its tags. */
export function describe(rev: Revision): string {
  return `${rev.timestamp}${rev.tags.length > 0 ? `, tags ${rev.tags.join(',')}` : ', no tags'}`;
}

export const tagsCommand: Command = {
  name: 'tags',
  summary: 'set, add or remove tags of revisions',
  usage:
    'tags {set,add,remove} -r SPEC [--dry-run] [--force] [--json] TAGS   (comma-separated; more than one revision needs a yes or --force)',
  options: {
    revision: { ...revisionOption('the revisions to change'), defaultText: 'none: -r is required' },
    'dry-run': DRY_RUN_OPTION,
    force: {
      ...SET_FORCE_OPTION,
      description: `${SET_FORCE_OPTION.description}; as backy 2.x's tags -f (tags are not checked against the schedule)`,
    },
    json: JSON_OPTION,
  },
  positionals: [2, 2],
  completeArguments: ['set', 'add', 'remove'],
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
    const dryRun = ctx.values['dry-run'] === true;
    const json = ctx.values.json === true;
    const changeTags = (current: string[]) =>
      action === 'set'
        ? tags
        : action === 'add'
          ? [...new Set([...current, ...tags])]
          : current.filter((t) => !tags.includes(t));
    const shown = (list: string[]) => list.join(',') || '(no tags; removed at the next expire)';
    return selectRevisions(ctx, ctx.values.revision, dryRun, async (archive, revisions) => {
      if (!dryRun)
        await confirmSet(ctx, archive, `tags ${action} -r ${String(ctx.values.revision)}`, revisions.length);
      const results: (ReturnType<typeof changedJson> & { previousTags: string[] })[] = [];
      for (const rev of revisions) {
        const next = changeTags(rev.tags);
        const same = next.length === rev.tags.length && next.every((t, i) => t === rev.tags[i]);
        if (dryRun) {
          results.push({
            ...changedJson({ ...rev, tags: next }, same ? 'unchanged' : 'would be changed'),
            previousTags: rev.tags,
          });
          if (!json)
            ctx.print(
              same
                ? `${rev.uuid}: unchanged (${shown(rev.tags)})`
                : `${rev.uuid}: ${shown(rev.tags)} -> ${shown(next)} (would be changed)`,
            );
          continue;
        }
        const done = await archive.updateRevision(rev.uuid, (current) => ({
          ...current,
          tags: changeTags(current.tags),
        }));
        if (done == null) {
          results.push({ ...changedJson(rev, 'gone'), previousTags: rev.tags });
          if (!json) ctx.print(`${rev.uuid}: no longer exists`);
          continue;
        }
        results.push({ ...changedJson(done, same ? 'unchanged' : 'changed'), previousTags: rev.tags });
        if (!json) ctx.print(`${rev.uuid}: ${shown(done.tags)}`);
      }
      if (json) ctx.printJson({ dryRun, revisions: results });
    });
  },
};

export const expireCommand: Command = {
  name: 'expire',
  summary: "apply the schedule's keep rules now",
  usage: 'expire [--dry-run] [--json]',
  options: {
    'dry-run': { type: 'boolean', short: 'n', description: 'list what would expire, change nothing' },
    json: JSON_OPTION,
  },
  positionals: [0, 0],
  async run(ctx) {
    const dryRun = ctx.values['dry-run'] === true;
    // Removing needs the admin credentials of an append-only store; a dry run changes nothing.
    const archive = await ctx.openArchive({ admin: !dryRun });
    const unscheduled = await unscheduledLegacyWarning(archive);
    if (unscheduled != null) ctx.warn(unscheduled);
    const actions = await expireArchive(archive, { logger: ctx.logger(), dryRun });
    if (ctx.values.json) {
      ctx.printJson({
        dryRun,
        revisions: actions.map((a) => ({
          uuid: a.uuid,
          removed: a.remove,
          expiredTags: a.removeTags,
          keptBy: a.keptBy ?? null,
        })),
      });
      return 0;
    }
    let changes = 0;
    // Object Lock's guard says until when: the revisions' retention dates.
    const retained = actions.some((a) => a.keptBy === 'retained')
      ? new Map((await archive.revisions()).map((r) => [r.uuid, r.retention?.until]))
      : null;
    for (const a of actions) {
      const tags = a.removeTags.join(',');
      const until = a.keptBy === 'retained' ? retained?.get(a.uuid) : undefined;
      const reason = until != null ? `retained by Object Lock until ${until}` : a.keptBy;
      const kept = a.keptBy != null ? `; kept: ${reason}` : '';
      if (a.remove || a.removeTags.length > 0) changes++;
      if (a.remove) ctx.print(`${a.uuid}: ${dryRun ? 'would be removed' : 'removed'}`);
      else if (a.removeTags.length > 0)
        ctx.print(`${a.uuid}: tags ${tags} ${dryRun ? 'would expire' : 'expired'}${kept}`);
      // Calendar retention lists every revision with the rule that keeps it, as a prune simulator.
      else if ((dryRun || a.keptBy === 'retained') && a.keptBy != null)
        ctx.print(`${a.uuid}: kept (${reason})`);
    }
    if (changes === 0) ctx.print('nothing to expire');
    return 0;
  },
};

/** `YYYY-MM-DD` as the start of that day in UTC (ms), or null when not given. */
function dayStart(value: string | undefined, option: string): number | null {
  if (value == null) return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value.trim());
  const time = m == null ? Number.NaN : Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  if (
    m == null ||
    Number.isNaN(time) ||
    new Date(time).getUTCMonth() !== Number(m[2]) - 1 ||
    new Date(time).getUTCDate() !== Number(m[3])
  )
    throw new BackyError('USAGE', `distrust ${option} ${JSON.stringify(value)}: expected a date YYYY-MM-DD`);
  return time;
}
