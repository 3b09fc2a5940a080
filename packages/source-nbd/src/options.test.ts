import { describe, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import type { NbdSourceOptions, nbdSourceOptions } from './nbd-source.js';
import type { Qcow2SourceOptions, qcow2SourceOptions } from './qcow2-options.js';

// Checked when the package is type-checked (`tsc --noEmit`): the schemas and the published types agree.
describe('the nbd and qcow2 source options', () => {
  it('are what the schemas produce', () => {
    expectTypeOf<z.output<typeof nbdSourceOptions>>().toEqualTypeOf<NbdSourceOptions>();
    expectTypeOf<z.output<typeof qcow2SourceOptions>>().toEqualTypeOf<Qcow2SourceOptions>();
  });
});
