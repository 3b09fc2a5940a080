import { describe, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import type { QemuSourceOptions, qemuSourceOptions } from './options.js';

// Checked when the package is type-checked (`tsc --noEmit`): the schema and the published type agree.
describe('the qemu source options', () => {
  it('are what the schema produces', () => {
    expectTypeOf<z.output<typeof qemuSourceOptions>>().toEqualTypeOf<QemuSourceOptions>();
  });
});
