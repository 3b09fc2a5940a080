import { defineSource } from '@backy/core/source';
import { parseImageArgument } from './image-argument.js';
import { rbdSourceOptions } from './options.js';
import { Rbd } from './rbd.js';
import type { RbdSourceOptions } from './rbd-options.js';
import { createRbdSource } from './source.js';

// What other packages use: the definition (default), the source with its hooks for
// source-flyingcircus, the snapshot prefix, and the diff encoder the Ceph benchmark feeds images with.
export { encodeRbdDiff, type RbdDiffRecord } from './diff-stream.js';
export {
  createRbdSource,
  type MakeSnapshotArgs,
  type RbdSourceHooks,
  type RbdSourceOptions,
  SNAPSHOT_PREFIX,
} from './source.js';

export default defineSource<RbdSourceOptions>({
  type: 'ceph-rbd',
  optionsSchema: rbdSourceOptions,
  create: (options, env) => createRbdSource(options, env),
  parseInitArgument: (argument) => parseImageArgument(argument),
  describe: (options) => `${options.pool}/${options.image}`,
  paths: ['conf', 'keyring'],
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
