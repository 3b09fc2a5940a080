import {
  type BackupContext,
  type BackupSource,
  defineSource,
  type VerificationResult,
  type VerifyContext,
} from '@backy/core/source';
import { BASE_ALLOCATION } from '@backy/nbd-protocol';
import { z } from 'zod';
import { describeAddress, parseNbdUrl } from './address.js';
import { NbdClient } from './client.js';
import {
  type BackupRun,
  backupExport,
  dirtyBitmapContext,
  type SampleHooks,
  verifyExport,
} from './export-backup.js';

const validUrl = (url: string) => {
  try {
    parseNbdUrl(url);
    return true;
  } catch {
    return false;
  }
};

/** The nbd source's options (`source:` of an archive config with `type: nbd`). */
export interface NbdSourceOptions {
  /** The export: `nbd://host[:port]/export` or `nbd+unix:///export?socket=PATH`. */
  url: string;
  /**
   * A QEMU dirty bitmap the server offers (`qemu:dirty-bitmap:NAME`) that tracks writes since the
   * previous backup: an incremental reads only what it reports dirty. Default: none, every backup full.
   */
  bitmap?: string;
}

// The type is written out (not `z.infer`) so that the published declarations do not name zod;
// options.test.ts holds the schema to it.
export const nbdSourceOptions = z.strictObject({
  url: z
    .string()
    .min(1)
    .refine(validUrl, 'must be nbd://host[:port]/export or nbd+unix:///export?socket=PATH'),
  bitmap: z
    .string()
    .min(1)
    .regex(/^[^\s]+$/, 'bitmap name must not contain white space')
    .optional(),
});

/** The `nbd` source: any NBD export; allocation-aware full backups, incrementals from a dirty bitmap. */
export function createNbdSource(options: NbdSourceOptions, hooks: SampleHooks = {}): BackupSource {
  const address = parseNbdUrl(options.url);
  const url = describeAddress(address);
  const runs = new Map<string, BackupRun>();
  const { bitmap } = options;

  return {
    async backup(ctx: BackupContext): Promise<void> {
      const client = await NbdClient.connect(address, {
        metaContexts: [BASE_ALLOCATION, ...(bitmap != null ? [dirtyBitmapContext(bitmap)] : [])],
        signal: ctx.signal,
      });
      try {
        const info = ctx.parent?.revision.source_info ?? {};
        const matches = info.url === url && info.bitmap === bitmap;
        ctx.remember({ url, ...(bitmap != null ? { bitmap } : {}) });
        const run = await backupExport(
          ctx,
          client,
          bitmap != null && matches
            ? { bitmap }
            : {
                bitmap: null,
                fullReason:
                  bitmap == null
                    ? 'no bitmap configured'
                    : 'the parent revision was not made from this bitmap',
              },
          hooks,
        );
        runs.set(ctx.revision.uuid, run);
      } finally {
        await client.close();
      }
    },

    async verify(ctx: VerifyContext): Promise<VerificationResult> {
      const client = await NbdClient.connect(address, { signal: ctx.signal });
      try {
        return await verifyExport(ctx, client, runs.get(ctx.revision.uuid) ?? null, hooks);
      } finally {
        await client.close();
      }
    },

    async finish({ revision }) {
      runs.delete(revision.uuid);
    },
  };
}

export const nbdSource = defineSource<NbdSourceOptions>({
  type: 'nbd',
  optionsSchema: nbdSourceOptions,
  create: (options) => createNbdSource(options),
  parseInitArgument: (argument) => ({ url: argument }),
  describe: (options) => options.url,
  async checkInit(options) {
    try {
      const client = await NbdClient.connect(parseNbdUrl(options.url), { timeoutMs: 10_000 });
      await client.close();
      return [];
    } catch (error) {
      return [(error as Error).message];
    }
  },
});
