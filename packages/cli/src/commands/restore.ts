import {
  BackyError,
  failedOwnVerification,
  formatBytes,
  type RevisionReader,
  restoreToPath,
  restoreToStream,
} from '@backy/core';
import { type Command, JSON_OPTION, revisionOption } from '../command.js';

export const restoreCommand: Command = {
  name: 'restore',
  summary: 'write a revision to a file, a block device or stdout (-)',
  usage: 'restore [-r SPEC] [--force] [--json] TARGET|-',
  options: {
    revision: revisionOption('the revision to restore', 'last'),
    force: { type: 'boolean', description: 'overwrite an existing TARGET file' },
    json: { ...JSON_OPTION, description: `${JSON_OPTION.description}; not with TARGET -` },
  },
  positionals: [1, 1],
  completeArguments: 'file',
  abortable: true,
  async run(ctx) {
    const target = ctx.positionals[0]!;
    if (target === '-' && ctx.stdout.isTTY) {
      throw new BackyError(
        'USAGE',
        'refusing to write binary image data to a terminal; redirect stdout or give a TARGET file',
      );
    }
    if (target === '-' && ctx.values.json)
      throw new BackyError('USAGE', 'restore: --json needs a TARGET file: with -, stdout carries the image');
    const archive = await ctx.openArchive();
    const logger = ctx.logger();
    const rev = await archive.resolveOne(String(ctx.values.revision));
    if (failedOwnVerification(rev)) {
      ctx.warn(
        `revision ${rev.uuid} failed its own verification when it was made (the source changed under the backup, or the store damaged a chunk): its image may never have existed`,
      );
    }
    let reader: RevisionReader | null = null;
    try {
      reader = await archive.openReader(rev);
      const onProgress = (done: number, total: number) => ctx.progress.update('restore', done, total);
      logger.info({ revision: rev.uuid, target }, 'restore started');
      if (target === '-') {
        let written = 0;
        await restoreToStream(reader, ctx.stdout, {
          signal: ctx.signal,
          onProgress: (done, total) => {
            written = done;
            onProgress(done, total);
          },
        }).catch((error: NodeJS.ErrnoException) => {
          if (error?.code !== 'EPIPE') throw error;
          throw new BackyError(
            'IO',
            `restore to stdout: the reader closed the pipe after ${formatBytes(written)} of ${formatBytes(rev.size)}; the image is incomplete`,
            { cause: error },
          );
        });
      } else {
        const kind = await restoreToPath(reader, target, {
          force: ctx.values.force === true,
          signal: ctx.signal,
          onProgress,
        });
        ctx.progress.finish();
        if (ctx.values.json) {
          ctx.printJson({ revision: rev.uuid, size: rev.size, target, kind });
        } else
          ctx.note(
            `Restored revision ${rev.uuid} (${formatBytes(rev.size)}) to ${kind === 'file' ? 'file' : 'block device'} ${target}`,
          );
      }
      logger.info({ revision: rev.uuid, target }, 'restore completed');
    } finally {
      ctx.progress.finish();
      await reader?.close();
    }
    return 0;
  },
};
