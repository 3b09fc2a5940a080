import { formatBytes, purgeStore } from '@backy/core';
import type { Command } from '../command.js';

export const purgeCommand: Command = {
  name: 'purge',
  summary: 'delete chunks no revision of any archive using the store references',
  usage: 'purge [--wait SECONDS]',
  options: { wait: { type: 'string', default: '0' } },
  positionals: [0, 0],
  abortable: true,
  async run(ctx) {
    const archive = await ctx.openArchive();
    const wait = Number(ctx.values.wait);
    const result = await purgeStore(archive.store, {
      logger: ctx.logger(),
      waitSeconds: Number.isFinite(wait) && wait > 0 ? wait : 0,
      signal: ctx.signal,
      onProgress: (done, total) => ctx.progress.update('purge', done, Math.max(done, total)),
    });
    ctx.progress.finish();
    ctx.print(
      `purged ${result.chunksDeleted} chunks (${formatBytes(result.bytesFreed)}); ${result.chunksKept} chunks in use by ${result.archives} archive${result.archives === 1 ? '' : 's'}`,
    );
    return 0;
  },
};
