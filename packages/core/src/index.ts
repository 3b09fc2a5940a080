export {
  ARCHIVE_ID_FILE,
  Archive,
  type ArchiveScan,
  CONFIG_FILE,
  type DamagedRevision,
  LOG_FILE,
} from './archive.js';
export { type BackupOptions, chunkChecker, type Progress, runBackup } from './backup.js';
export {
  type CentralConfig,
  centralConfigSchema,
  DEFAULT_CENTRAL_CONFIG,
  type GlobalConfig,
  globalConfigSchema,
  type JobConfig,
  jobConfigSchema,
  jobNameSchema,
  type LoadedCentralConfig,
  loadCentralConfig,
  parseCentralConfig,
} from './central-config.js';
export {
  type ArchiveConfig,
  archiveConfigSchema,
  formatZodIssue,
  fromLegacyArchiveConfig,
  loadArchiveConfig,
  readYamlFile,
  type SourceConfig,
  sourceConfigSchema,
  storeConfigSchema,
  validateConfig,
} from './config.js';
export { BackyError, type BackyErrorCode, ioError, isBackyError } from './errors.js';
export { expireArchive } from './expire.js';
export { fsyncDir, writeFileAtomic } from './fs-util.js';
export { encodeShortId, ID_ALPHABET, isRevisionId, newRevisionId } from './ids.js';
export { ChunkedRevisionReader, ChunkedRevisionWriter } from './layout/chunked.js';
export { lzoDecompressWithHeader } from './legacy/lzo.js';
export { mmh3Hex } from './legacy/mmh3.js';
export { acquireLock, type Lock, type LockMode } from './lock.js';
export { type AppendLog, openAppendLog } from './log-file.js';
export {
  archiveExports,
  DEFAULT_EXPORT_SPEC,
  type NbdExportInfo,
  type NbdExportProvider,
  NbdServer,
  type NbdServerOptions,
  type OpenedExport,
} from './nbd/index.js';
export { forgetArchive, type PurgeResult, purgeStore, storeUsage } from './purge.js';
export { blockDeviceSize, type RestoreOptions, restoreToPath, restoreToStream } from './restore.js';
export {
  failedOwnVerification,
  fromLegacyRevision,
  isComplete,
  legacyRevisionSchema,
  type Revision,
  type RevisionData,
  type RevisionStats,
  readRevisionFile,
  revisionDate,
  revisionSchema,
  TRUST_STATES,
  type Trust,
  type Verification,
  writeRevisionFile,
} from './revision.js';
export {
  factsOf,
  parseRevisionFacts,
  quickRevisionFacts,
  type RevisionFacts,
  readRevisionFacts,
  readRevisions,
  scanRevisionFacts,
} from './revision-facts.js';
export type { RevisionReader, RevisionWriter, WriterStats } from './revision-io.js';
export { resolveRevisionSpec, resolveSingleRevision } from './revision-spec.js';
export { forEachChunk, readChunksInOrder } from './revision-stream.js';
export {
  durationSchema,
  type ExpiryAction,
  MANUAL_TAG_PREFIX,
  planExpiry,
  type Schedule,
  scheduleSchema,
  type TagRule,
  tagNameSchema,
} from './schedule.js';
export {
  type BackupContext,
  type BackupSource,
  defineSource,
  isSourceDefinition,
  type SourceDefinition,
  type SourceEnvironment,
  type VerificationResult,
  type VerifyContext,
} from './source.js';
export { BufferPool, chunkBuffers } from './store/buffer-pool.js';
export {
  CHUNK_HASH,
  chunkHashHex,
  type HashAlgorithm,
  hashChunk,
  isAllZero,
  sha256Hex,
} from './store/chunk-hash.js';
export { ChunkMap, DEFAULT_CHUNK_SIZE } from './store/chunk-map.js';
export { ChunkStore } from './store/chunk-store.js';
export { CODECS, type CodecName } from './store/codec.js';
export { formatBytes, formatDuration, parseBytes, parseDuration } from './units.js';
export { type UpgradeResult, type UpgradeStep, upgradeArchive } from './upgrade.js';
export { type DamagedChunk, type RevisionVerifyResult, verifyRevisions } from './verify.js';
