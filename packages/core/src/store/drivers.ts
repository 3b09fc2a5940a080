import { join, resolve } from 'node:path';
import { z } from 'zod';
import { DirectoryBackend } from '../backend/directory.js';
import { isStandardSchema } from '../source/contract.js';
import type { StoreDriver } from './contract.js';

/**
 * A store module's default export: `export default defineStoreDriver({ type, optionsSchema, open })`.
 * A driver in a package is named by its package name (`store: {type: backy-store-x}`), so `type` must
 * be that name.
 */
export function defineStoreDriver<Options>(driver: StoreDriver<Options>): StoreDriver<Options> {
  return driver;
}

/** Checks that a dynamically loaded module's default export has the shape of a store driver. */
export function isStoreDriver(value: unknown): value is StoreDriver {
  const v = value as StoreDriver | null;
  return (
    v != null &&
    typeof v === 'object' &&
    typeof v.type === 'string' &&
    typeof v.open === 'function' &&
    isStandardSchema(v.optionsSchema)
  );
}

/** The built-in store: `<archive>/chunks`, or `path` (relative to the archive). */
export const directoryStoreDriver = defineStoreDriver({
  type: 'directory',
  optionsSchema: z.strictObject({
    /** Chunk store directory (default `chunks` in the archive); relative paths are relative to the archive. */
    path: z.string().min(1).optional(),
  }),
  open(options, context) {
    const root =
      options.path == null ? join(context.archiveDir, 'chunks') : resolve(context.archiveDir, options.path);
    return new DirectoryBackend(root);
  },
});
