import { describe, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import type { RbdSourceOptions, rbdSourceOptions } from './options.js';

// Checked when the package is type-checked (`tsc --noEmit`): the schema and the published type agree.
describe('the ceph-rbd source options', () => {
  it('are what the schema produces', () => {
    expectTypeOf<z.output<typeof rbdSourceOptions>>().toEqualTypeOf<RbdSourceOptions>();
  });
});
