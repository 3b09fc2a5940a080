import { z } from 'zod';

/** The qcow2 source's options (`source:` of an archive config with `type: qcow2`). */
export interface Qcow2SourceOptions {
  /** Path of the qcow2 image (not in use by a running VM while backy reads it). */
  filename: string;
}

// Not in qcow2.ts, an entry of the package, so that its declarations do not name zod; options.test.ts
// holds the schema to the type.
export const qcow2SourceOptions = z.strictObject({
  filename: z.string().min(1),
});
