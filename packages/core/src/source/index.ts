/**
 * `@backy/core/source`: everything a source plugin needs, and nothing of how revisions are stored.
 *
 *   import { defineSource, forEachChunk, BackyError } from '@backy/core/source';
 *   export default defineSource({ type: 'my-source', optionsSchema, create: (options) => ({ backup }) });
 *
 * See docs/writing-a-source.md. The conformance suite is `@backy/core/testing`.
 */
export { blockDeviceSize } from '../block-device.js';
export { BackyError, type BackyErrorCode, isBackyError } from '../errors.js';
export type { RevisionData, Verification } from '../revision.js';
export type { RevisionReader, RevisionWriter, WriterStats } from '../revision-io.js';
export { forEachChunk, readChunksInOrder } from '../revision-stream.js';
export { checkDuration } from '../schedule.js';
export { parseDuration } from '../units.js';
export {
  type BackupContext,
  type BackupSource,
  defineSource,
  isStandardSchema,
  type SourceDefinition,
  type SourceEnvironment,
  type VerificationResult,
  type VerifyContext,
} from './contract.js';
export { resolveSourcePaths } from './options.js';
export {
  DEFAULT_SAMPLE_SHARE,
  parseVerifyBudget,
  sampleIndexes,
  type VerifyBudget,
} from './verify-plan.js';
