import { BackyError, defineSource } from '@backy/core/source';
import { Rbd } from './rbd.js';
import { createRbdSource, type RbdSourceOptions, rbdSourceOptions } from './source.js';

export { type ApplyDiffOptions, type ApplyDiffResult, applyRawImage, applyRbdDiff } from './apply-diff.js';
export {
  encodeRbdDiff,
  parseRbdDiff,
  RBD_DIFF_V1_HEADER,
  RbdDiffParser,
  type RbdDiffRecord,
} from './diff-stream.js';
export {
  type CephClientOptions,
  imageSpec,
  Rbd,
  RbdError,
  type RbdImageInfo,
  type RbdOptions,
  type RbdSnapshot,
  summarizeStderr,
} from './rbd.js';
export {
  QemuImgChunkReader,
  qemuImgSupportsRbd,
  qemuRbdFilename,
  qemuRbdImageOpts,
} from './snapshot-reader.js';
export {
  createRbdSource,
  type MakeSnapshotArgs,
  type RbdSourceHooks,
  type RbdSourceOptions,
  rbdSourceOptions,
  SNAPSHOT_PREFIX,
  sampleIndexes,
} from './source.js';

/** `backy init ceph-rbd POOL/IMAGE` → `{ pool, image }`. */
export function parseImageArgument(argument: string): { pool: string; image: string } {
  const match = /^([^/@\s]+)\/([^/@\s]+)$/.exec(argument.trim());
  if (match == null) {
    throw new BackyError(
      'USAGE',
      `expected POOL/IMAGE for a ceph-rbd source (e.g. rbd/vm01.root), got ${JSON.stringify(argument)}`,
    );
  }
  return { pool: match[1]!, image: match[2]! };
}

export default defineSource<RbdSourceOptions>({
  type: 'ceph-rbd',
  optionsSchema: rbdSourceOptions,
  create: (options, env) => createRbdSource(options, env),
  parseInitArgument: (argument) => parseImageArgument(argument),
  describe: (options) => `${options.pool}/${options.image}`,
  async checkInit(options) {
    const rbd = new Rbd({ conf: options.conf, id: options.id, keyring: options.keyring });
    try {
      return (await rbd.imageExists(options.pool, options.image))
        ? []
        : [`RBD image ${options.pool}/${options.image} does not exist (yet)`];
    } catch (error) {
      return [`cannot check RBD image ${options.pool}/${options.image}: ${(error as Error).message}`];
    }
  },
});
