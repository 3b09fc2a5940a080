import { formatBytes, type RevisionVerifyResult, verifyRevisions } from '@backy/core';
import { type Command, JSON_OPTION, revisionOption } from '../command.js';

export const verifyCommand: Command = {
  name: 'verify',
  summary: 're-read and check every chunk of revisions; good ones become verified, damaged ones distrusted',
  usage: 'verify [-r SPEC] [--json]   (default: all)',
  options: { revision: revisionOption('the revisions to verify', 'all'), json: JSON_OPTION },
  positionals: [0, 0],
  abortable: true,
  async run(ctx) {
    const archive = await ctx.openArchive();
    const revisions = await archive.resolve(String(ctx.values.revision));
    const results = await verifyRevisions(archive, revisions, {
      logger: ctx.logger(),
      signal: ctx.signal,
      onProgress: (done, total) => ctx.progress.update('verify', done, total),
    });
    ctx.progress.finish();
    if (ctx.values.json) {
      const revisions = results.map(verifyJson);
      ctx.printJson({ revisions });
      return revisions.some((r) => r.result === 'damaged' || r.result === 'unreadable') ? 1 : 0;
    }
    let bad = 0;
    for (const result of results) {
      if (result.gone) {
        ctx.print(`${result.uuid}: forgotten while it was verified (nothing written)`);
        continue;
      }
      if (result.ok) {
        ctx.print(`${result.uuid}: verified`);
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
    }
    if (results.length === 0) ctx.print('no revisions to verify');
    return bad > 0 ? 1 : 0;
  },
};

/** One revision's verify result as `--json` prints it (docs/json.md). */
function verifyJson(r: RevisionVerifyResult) {
  const result = r.gone ? 'gone' : r.ok ? 'verified' : r.problem != null ? 'unreadable' : 'damaged';
  return {
    uuid: r.uuid,
    result,
    damaged: r.damaged.map((d) => ({ offset: d.offset, index: d.index, hash: d.hash, reason: d.reason })),
    problem: r.problem ?? null,
  };
}
