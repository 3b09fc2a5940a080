import { z } from 'zod';

export type { RbdSourceOptions } from './rbd-options.js';

// The zod schema, for sources that extend these options (@backy/source-flyingcircus): the entry
// `@backy/source-ceph-rbd/options`, apart from the package's main entry, whose declarations do not name
// zod. options.test.ts holds the schema to the type.
const rbdName = (what: string) =>
  z
    .string()
    .min(1)
    .regex(/^[^/@\s]+$/, `${what} name must not contain '/', '@' or white space`);

export const rbdSourceOptions = z.strictObject({
  pool: rbdName('pool'),
  image: rbdName('image'),
  'full-always': z.boolean().default(false),
  conf: z.string().min(1).optional(),
  id: z.string().min(1).optional(),
  keyring: z.string().min(1).optional(),
});
