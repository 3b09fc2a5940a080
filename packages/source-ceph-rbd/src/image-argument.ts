import { BackyError } from '@backy/core/source';

/** `backy init ceph-rbd POOL/IMAGE`: the argument as options. */
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
