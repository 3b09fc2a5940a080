import { describe, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import type { S3Options, s3OptionsSchema } from './options.js';

// Checked when the package is type-checked (`tsc --noEmit`): the schema and the published type agree.
describe('the s3 store options', () => {
  it('are what the schema produces', () => {
    expectTypeOf<z.output<typeof s3OptionsSchema>>().toEqualTypeOf<S3Options>();
  });
});
