import { BackyError, isProtected } from '@backy/core';
import { type Command, JSON_OPTION, revisionOption } from '../command.js';
import {
  changedJson,
  confirmSet,
  DRY_RUN_OPTION,
  describe,
  SET_FORCE_OPTION,
  selectRevisions,
} from './revisions.js';

/** `protect` and `unprotect`: one command each, the same but for the flag they set. */
function protectionCommand(name: 'protect' | 'unprotect'): Command {
  const on = name === 'protect';
  return {
    name,
    summary: on
      ? 'set revisions aside: expire, forget and purge leave them (and their chunks) until unprotect'
      : 'undo protect: the revisions expire and may be forgotten again',
    usage: `${name} -r SPEC [--dry-run] [--force] [--json]   (more than one revision needs a yes or --force)`,
    options: {
      revision: {
        ...revisionOption(`the revisions to ${name}`),
        defaultText: 'none: -r is required',
      },
      'dry-run': DRY_RUN_OPTION,
      force: SET_FORCE_OPTION,
      json: JSON_OPTION,
    },
    positionals: [0, 0],
    async run(ctx) {
      const spec = ctx.values.revision;
      if (spec == null) throw new BackyError('USAGE', `${name} needs -r SPEC`);
      const dryRun = ctx.values['dry-run'] === true;
      const json = ctx.values.json === true;
      const done = on ? 'protected' : 'unprotected';
      return selectRevisions(ctx, spec, dryRun, async (archive, revisions) => {
        if (!dryRun) await confirmSet(ctx, archive, `${name} -r ${String(spec)}`, revisions.length);
        const results: ReturnType<typeof changedJson>[] = [];
        for (const rev of revisions) {
          if (isProtected(rev) === on) {
            results.push(changedJson(rev, 'unchanged'));
            if (!json) ctx.print(`${rev.uuid}: ${done} already`);
            continue;
          }
          if (dryRun) {
            results.push(changedJson(rev, `would be ${done}`));
            if (!json) ctx.print(`${rev.uuid}: would be ${done} (${describe(rev)})`);
            continue;
          }
          const next = await archive.updateRevision(rev.uuid, (current) => {
            const { protected: _was, ...rest } = current;
            return on ? { ...rest, protected: true } : rest;
          });
          if (next == null) {
            results.push(changedJson(rev, 'gone'));
            if (!json) ctx.print(`${rev.uuid}: no longer exists`);
            continue;
          }
          ctx.logger().info({ revision: rev.uuid }, `revision ${done}`);
          results.push(changedJson(next, done));
          if (!json) ctx.print(`${rev.uuid}: ${done}`);
        }
        if (json) ctx.printJson({ dryRun, revisions: results });
      });
    },
  };
}

export const protectCommand = protectionCommand('protect');
export const unprotectCommand = protectionCommand('unprotect');
