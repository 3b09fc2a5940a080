import {
  BackyError,
  formatBytes,
  parseDuration,
  type Revision,
  type RevisionVerifyResult,
  verifyRevisions,
} from '@backy/core';
import { type Command, type CommandContext, JSON_OPTION, revisionOption } from '../command.js';

export const verifyCommand: Command = {
  name: 'verify',
  summary:
    're-read and check every chunk of revisions; good ones become verified, damaged ones distrusted; with Object Lock, extend retention that falls short',
  usage: 'verify [-r SPEC] [--outdated-after DURATION] [--json]   (default: all)',
  options: {
    revision: revisionOption('the revisions to verify', 'all'),
    'outdated-after': {
      type: 'string',
      valueName: 'DURATION',
      description:
        'only those not verified within DURATION (30m, 1d, 4w …) or never; if one is damaged, all of SPEC',
    },
    json: JSON_OPTION,
  },
  positionals: [0, 0],
  abortable: true,
  async run(ctx) {
    const archive = await ctx.openArchive();
    const chosen = await archive.resolve(String(ctx.values.revision));
    const outdatedAfter = outdatedAfterOption(ctx.values['outdated-after']);
    const revisions = outdatedAfter == null ? chosen : outdated(chosen, outdatedAfter, Date.now());
    const verify = (list: Revision[]) =>
      verifyRevisions(archive, list, {
        logger: ctx.logger(),
        signal: ctx.signal,
        onProgress: (done, total) => ctx.progress.update('verify', done, total),
      });
    const results = await verify(revisions);
    if (outdatedAfter != null && results.some((r) => !r.ok && !r.gone)) {
      // A damaged chunk may be shared by revisions verified recently, which still say `verified`:
      // read them too, so that every revision holding it is distrusted (and the next backup heals it).
      const rest = chosen.filter((r) => !revisions.includes(r));
      if (rest.length > 0) {
        ctx.logger().warn({ revisions: rest.length }, 'damage found: verifying the other revisions too');
        results.push(...(await verify(rest)));
      }
    }
    ctx.progress.finish();
    if (ctx.values.json) {
      const revisions = results.map(verifyJson);
      ctx.printJson({ revisions });
      const bad = revisions.some((r) => r.result === 'damaged' || r.result === 'unreadable');
      return bad || unretained(results) ? 1 : 0;
    }
    let bad = 0;
    for (const result of results) {
      if (result.gone) {
        ctx.print(`${result.uuid}: forgotten while it was verified (nothing written)`);
        continue;
      }
      if (result.ok) {
        ctx.print(`${result.uuid}: verified`);
        printRetention(ctx, result);
        continue;
      }
      bad++;
      if (result.problem != null) {
        ctx.print(`${result.uuid}: DAMAGED, cannot be read: ${result.problem} (revision distrusted)`);
        continue;
      }
      ctx.print(
        `${result.uuid}: DAMAGED, ${result.damaged.length} chunk${result.damaged.length === 1 ? '' : 's'} (revision distrusted)`,
      );
      for (const d of result.damaged)
        ctx.print(`  offset ${d.offset} (${formatBytes(d.offset)}), chunk ${d.index}: ${d.reason}`);
      printRetention(ctx, result);
    }
    if (results.length === 0) ctx.print('no revisions to verify');
    // A retention shortfall left unfixed is no damage (trust stays), but the operator must act on it.
    return bad > 0 || unretained(results) ? 1 : 0;
  },
};

/** `--outdated-after`'s seconds, or null without it. */
function outdatedAfterOption(value: unknown): number | null {
  if (value == null) return null;
  const seconds = parseDuration(String(value));
  if (seconds == null)
    throw new BackyError(
      'USAGE',
      `--outdated-after: invalid duration ${JSON.stringify(value)} (use e.g. 30m, 1h, 1d, 7w or seconds)`,
    );
  return seconds;
}

/** The revisions `backy verify` has not re-read within `seconds` before `now` (ms), or never. */
export function outdated(revisions: readonly Revision[], seconds: number, now: number): Revision[] {
  return revisions.filter((r) => {
    const at = r.verified_at == null ? Number.NaN : Date.parse(r.verified_at);
    return !Number.isFinite(at) || now - at >= seconds * 1000;
  });
}

/** Whether any revision has objects the store retains too short that verify could not extend. */
function unretained(results: readonly RevisionVerifyResult[]): boolean {
  return results.some((r) => !r.gone && (r.retention?.failed.length ?? 0) > 0);
}

/** What verify found of a revision's Object Lock retention: only what was short. */
function printRetention(ctx: Pick<CommandContext, 'print'>, result: RevisionVerifyResult): void {
  const r = result.retention;
  if (r == null) return;
  if (r.fixed > 0)
    ctx.print(
      `  retention: ${r.fixed} object${r.fixed === 1 ? ' was' : 's were'} retained too short by the store; extended`,
    );
  for (const f of r.failed)
    ctx.print(
      `  RETENTION TOO SHORT: ${f.object} retained until ${f.retainedUntil ?? 'never'}, needs ${f.requiredUntil}: ${f.reason}`,
    );
}

/** One revision's verify result as `--json` prints it (docs/json.md). */
function verifyJson(r: RevisionVerifyResult) {
  const result = r.gone ? 'gone' : r.ok ? 'verified' : r.problem != null ? 'unreadable' : 'damaged';
  return {
    uuid: r.uuid,
    result,
    damaged: r.damaged.map((d) => ({ offset: d.offset, index: d.index, hash: d.hash, reason: d.reason })),
    problem: r.problem ?? null,
    retention: r.retention ?? null,
  };
}
