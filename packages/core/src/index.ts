export { Archive, CONFIG_FILE, LOG_FILE, type ArchiveScan } from './archive.js';
export { runBackup, type BackupOptions, type Progress } from './backup.js';
export {
  DEFAULT_CENTRAL_CONFIG,
  centralConfigSchema,
  globalConfigSchema,
  jobConfigSchema,
  jobNameSchema,
  loadCentralConfig,
  parseCentralConfig,
  type CentralConfig,
  type GlobalConfig,
  type JobConfig,
  type LoadedCentralConfig,
} from './central-config.js';
export {
  archiveConfigSchema,
  formatZodIssue,
  loadArchiveConfig,
  readYamlFile,
  sourceConfigSchema,
  storeConfigSchema,
  validateConfig,
  type ArchiveConfig,
  type SourceConfig,
} from './config.js';
export { BackyError, ioError, isBackyError, type BackyErrorCode } from './errors.js';
export { expireArchive } from './expire.js';
export { fsyncDir, writeFileAtomic } from './fs-util.js';
export { ID_ALPHABET, encodeShortId, isRevisionId, newRevisionId } from './ids.js';
export { ChunkedRevisionReader, ChunkedRevisionWriter } from './layout/chunked.js';
export { acquireLock, type Lock, type LockMode } from './lock.js';
export { purgeStore, storeUsage, type PurgeResult } from './purge.js';
export { blockDeviceSize, restoreToPath, restoreToStream, type RestoreOptions } from './restore.js';
export {
  TRUST_STATES,
  isComplete,
  readRevisionFile,
  revisionDate,
  revisionSchema,
  writeRevisionFile,
  type Revision,
  type RevisionData,
  type RevisionStats,
  type Trust,
  type Verification,
} from './revision.js';
export type { RevisionReader, RevisionWriter, WriterStats } from './revision-io.js';
export { resolveRevisionSpec, resolveSingleRevision } from './revision-spec.js';
export { forEachChunk, readChunksInOrder } from './revision-stream.js';
export {
  MANUAL_TAG_PREFIX,
  durationSchema,
  planExpiry,
  scheduleSchema,
  tagNameSchema,
  type ExpiryAction,
  type Schedule,
  type TagRule,
} from './schedule.js';
export {
  defineSource,
  isSourceDefinition,
  type BackupContext,
  type BackupSource,
  type SourceDefinition,
  type SourceEnvironment,
  type VerificationResult,
  type VerifyContext,
} from './source.js';
export { ChunkMap, DEFAULT_CHUNK_SIZE, isAllZero, sha256Hex } from './store/chunk-map.js';
export { ChunkStore } from './store/chunk-store.js';
export { CODECS, type CodecName } from './store/codec.js';
export { formatBytes, formatDuration, parseBytes, parseDuration } from './units.js';
export { verifyRevisions, type DamagedChunk, type RevisionVerifyResult } from './verify.js';
