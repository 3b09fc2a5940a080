import { checkDuration } from '@backy/core/source';
import { z } from 'zod';

/** The qemu source's options (`source:` of an archive config with `type: qemu`). */
export interface QemuSourceOptions {
  /** The running QEMU's QMP socket (`-qmp unix:PATH,server=on,wait=off`). */
  qmp: string;
  /** The disk: a block node name (`-blockdev …,node-name=NAME`), a `-drive` id, or a device's qdev id. */
  drive: string;
  /** The guest agent's socket (`-chardev socket,path=PATH,…` of the virtio-serial port). Default: none (crash consistent). */
  'guest-agent'?: string;
  /** Guest mount points to freeze (`guest-fsfreeze-freeze-list`). Default: all (`guest-fsfreeze-freeze`). */
  'freeze-mountpoints'?: string[];
  /** How long the guest may stay frozen, and may take to answer (`10s`, seconds; in seconds). Default 10. */
  'freeze-timeout': number;
  /** Where the fleecing image (the disk's old data while the backup reads) is made. Default: the system's temp dir. */
  'fleecing-dir'?: string;
}

const durationSchema = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const seconds = checkDuration(value);
  if (typeof seconds !== 'string') return seconds;
  ctx.addIssue({ code: 'custom', message: seconds });
  return z.NEVER;
});

// The type is written out (not `z.infer`) so that the published declarations do not name zod;
// options.test.ts holds the schema to it.
export const qemuSourceOptions = z.strictObject({
  qmp: z.string().min(1),
  drive: z
    .string()
    .min(1)
    .regex(/^[^\s]+$/, 'drive must not contain white space'),
  'guest-agent': z.string().min(1).optional(),
  'freeze-mountpoints': z.array(z.string().startsWith('/', 'must be an absolute path')).min(1).optional(),
  'freeze-timeout': durationSchema.default(10),
  'fleecing-dir': z.string().min(1).optional(),
});
