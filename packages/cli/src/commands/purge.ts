import { resolve } from 'node:path';
import { BackyError, forgetArchive, formatBytes, purgeStore, writeStoreStats } from '@backy/core';
import type { StoreEntry } from '@backy/core/store';
import { type Command, JSON_OPTION } from '../command.js';

export const purgeCommand: Command = {
  name: 'purge',
  summary: 'delete chunks no revision of any archive using the store references',
  usage: 'purge [--wait SECONDS] [--dry-run] [--forget-archive PATH] [--json]',
  options: {
    wait: {
      type: 'string',
      default: '0',
      valueName: 'SECONDS',
      description: 'wait this long for running backups, restores and verifications to finish',
    },
    'dry-run': { type: 'boolean', description: 'list what would be deleted, delete nothing' },
    'forget-archive': {
      type: 'string',
      valueName: 'PATH',
      description:
        'stop counting the archive at PATH as a user of the store (its chunks go at the next purge)',
      complete: 'dir',
    },
    json: JSON_OPTION,
  },
  positionals: [0, 0],
  abortable: true,
  async run(ctx) {
    const forget = ctx.values['forget-archive'] as string | undefined;
    // Deleting needs the admin credentials of an append-only store; a dry run deletes nothing.
    const archive = await ctx.openArchive({ admin: forget != null || ctx.values['dry-run'] !== true });
    const wait = parseSeconds(String(ctx.values.wait), 'purge --wait');
    if (forget != null) {
      const path = resolve(forget);
      const n = await forgetArchive(archive.store, path);
      ctx.logger().info({ archive: path, entries: n }, 'archive unregistered from the store');
      if (ctx.values.json) {
        ctx.printJson({ forgottenArchive: path, store: archive.store.root, entries: n });
        return 0;
      }
      ctx.print(
        `${path}: no longer counted as a user of ${archive.store.root}; run purge to free its chunks`,
      );
      return 0;
    }
    const dryRun = ctx.values['dry-run'] === true;
    const json = ctx.values.json === true;
    const wouldDelete: { kind: string; hash: string | null; path: string; bytes: number }[] = [];
    const result = await purgeStore(archive.store, {
      logger: ctx.logger(),
      waitSeconds: wait,
      signal: ctx.signal,
      dryRun,
      archiveDir: archive.path,
      // A dry run lists every file that would go; a real purge only sums them up.
      onDelete: dryRun
        ? (entry) => {
            if (json) {
              wouldDelete.push({
                kind: entryKind(entry),
                hash: entry.hash ?? entry.damagedOf ?? null,
                path: entry.path,
                bytes: entry.bytes,
              });
              return;
            }
            ctx.print(
              `would delete ${entry.hash != null ? `chunk ${entry.hash}` : entry.damagedOf != null ? `damaged chunk ${entry.damagedOf}` : 'temporary file'} ${entry.path} (${formatBytes(entry.bytes)})`,
            );
          }
        : undefined,
      onProgress: (done, total) => ctx.progress.update('purge', done, Math.max(done, total)),
    });
    ctx.progress.finish();
    if (!dryRun) {
      // What purge saw of the whole store, for the daemon's metrics: they never walk the store themselves.
      await writeStoreStats(archive.path, {
        store: archive.store.root,
        chunks: result.chunksKept,
        bytes: result.bytesKept,
        referenced_bytes: result.referencedBytes,
        revisions: result.revisions,
        archives: result.archives,
        updated: new Date().toISOString(),
      }).catch((error: unknown) =>
        ctx
          .logger()
          .warn({ err: error }, 'cannot record the store stats (metrics only): purge itself succeeded'),
      );
    }
    if (json) {
      ctx.printJson({ dryRun, ...result, ...(dryRun ? { wouldDelete } : {}) });
      return 0;
    }
    for (const path of result.staleEntries)
      ctx.print(`${path}: archive moved; its old registry entry ${dryRun ? 'would be' : 'was'} dropped`);
    ctx.print(
      `${dryRun ? 'would purge' : 'purged'} ${result.chunksDeleted} chunks (${formatBytes(result.bytesFreed)}); ${result.chunksKept} chunks in use by ${result.archives} archive${result.archives === 1 ? '' : 's'}`,
    );
    if (result.chunksRetained > 0)
      ctx.print(
        `kept ${result.chunksRetained} unreferenced chunks (${formatBytes(result.bytesRetained)}) that the store's Object Lock retains${result.retainedUntil != null ? ` until ${result.retainedUntil} at the latest` : ''}: a later purge removes them`,
      );
    return 0;
  },
};

/** What a file purge deletes is: a chunk, a chunk moved aside as damaged, or a temporary file. */
function entryKind(entry: StoreEntry): 'chunk' | 'damaged' | 'temporary' {
  return entry.hash != null ? 'chunk' : entry.damagedOf != null ? 'damaged' : 'temporary';
}

/** A number of seconds as the user typed it: digits with an optional fraction, nothing else (not `''`, `abc`, `-5`). */
export function parseSeconds(text: string, option: string): number {
  if (!/^\d+(\.\d+)?$/.test(text.trim()))
    throw new BackyError(
      'USAGE',
      `${option} ${JSON.stringify(text)}: expected a number of seconds (0 or more, e.g. 30)`,
    );
  return Number(text);
}
