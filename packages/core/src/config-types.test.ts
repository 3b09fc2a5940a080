import { describe, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import type {
  CentralConfig,
  centralConfigSchema,
  GlobalConfig,
  globalConfigSchema,
  JobConfig,
  jobConfigSchema,
} from './central-config.js';
import type {
  ArchiveConfig,
  archiveConfigSchema,
  EncryptionConfig,
  encryptionConfigSchema,
  SourceConfig,
  StoreConfig,
  sourceConfigSchema,
  storeConfigSchema,
} from './config.js';
import type { FleetConfig, fleetConfigSchema } from './fleet-config.js';
import type {
  RevisionData,
  RevisionStats,
  revisionSchema,
  revisionStatsSchema,
  Verification,
  verificationSchema,
} from './revision.js';
import type { Schedule, scheduleSchema, TagRule, tagRuleSchema } from './schedule.js';

// The public types are written out so that the published declarations do not name zod (issue 25); the
// schemas still validate. These checks run when the package is type-checked (`tsc --noEmit`): a schema
// and its type that drift apart fail there, whichever of the two changed.
describe('the config and revision types', () => {
  it('are what their schemas produce', () => {
    expectTypeOf<z.output<typeof sourceConfigSchema>>().toEqualTypeOf<SourceConfig>();
    expectTypeOf<z.output<typeof encryptionConfigSchema>>().toEqualTypeOf<EncryptionConfig>();
    expectTypeOf<z.output<typeof storeConfigSchema>>().toEqualTypeOf<StoreConfig>();
    expectTypeOf<z.output<typeof archiveConfigSchema>>().toEqualTypeOf<ArchiveConfig>();
    expectTypeOf<z.output<typeof tagRuleSchema>>().toEqualTypeOf<TagRule>();
    expectTypeOf<z.output<typeof fleetConfigSchema>>().toEqualTypeOf<FleetConfig>();
    expectTypeOf<z.output<typeof scheduleSchema>>().toEqualTypeOf<Schedule>();
    expectTypeOf<z.output<typeof revisionStatsSchema>>().toEqualTypeOf<RevisionStats>();
    expectTypeOf<z.output<typeof verificationSchema>>().toEqualTypeOf<Verification>();
    expectTypeOf<z.output<typeof revisionSchema>>().toEqualTypeOf<RevisionData>();
    expectTypeOf<z.output<typeof globalConfigSchema>>().toEqualTypeOf<GlobalConfig>();
    expectTypeOf<z.output<typeof jobConfigSchema>>().toEqualTypeOf<JobConfig>();
    expectTypeOf<z.output<typeof centralConfigSchema>>().toEqualTypeOf<CentralConfig>();
  });
});
