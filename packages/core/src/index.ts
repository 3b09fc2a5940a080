/**
 * `@backy/core`: the host API (archives, revisions, backup/restore/verify/purge, configuration), for
 * the CLI, the scheduler and anything else that drives backy. A source plugin needs only
 * `@backy/core/source`; tests get the conformance suite and helpers from `@backy/core/testing`.
 */

export {
  API_ROLES,
  type ApiConfig,
  type ApiListenAddress,
  type ApiRole,
  type ApiTokenConfig,
} from './api-config.js';
export { FENCE_FILE, type Fence, raiseFence, readFence } from './archive/fence.js';
export {
  Archive,
  type ArchiveOptions,
  type ArchiveScan,
  type DamagedRevision,
  type InitOptions,
  isConfigLayoutName,
  isRetained,
  keepHorizon,
  layoutOf,
  readRevisionFacts,
  readRevisions,
  scanRevisionFacts,
} from './archive/index.js';
export { unscheduledLegacyWarning } from './archive/unscheduled-legacy.js';
export { type BackupOptions, type Progress, runBackup } from './backup.js';
export {
  type CentralConfig,
  copyTargetOf,
  DEFAULT_CENTRAL_CONFIG,
  type GlobalConfig,
  type JobConfig,
  type LoadedCentralConfig,
  loadCentralConfig,
  parseCentralConfig,
  type VerifyJobSettings,
  verifyJobOf,
} from './central-config.js';
export {
  type ArchiveConfig,
  fromLegacyArchiveConfig,
  type SourceConfig,
  sourceOptionsOf,
} from './config.js';
export { assertSameChunkNames, type CopyOptions, type CopyResult, copyRevisions } from './copy.js';
export { BackyError, type BackyErrorCode, isBackyError } from './errors.js';
export { expireArchive } from './expire.js';
export { type FleetConfig, labelsSatisfy } from './fleet-config.js';
export { CONFIG_FILE, LOG_FILE } from './format/archive-files.js';
export { writeFileAtomic } from './fs-util.js';
export { heldBytes } from './held-data.js';
export { isRevisionId, newRevisionId } from './ids.js';
export { acquireLock, type Lock, type LockMode } from './lock.js';
export { type AppendLog, openAppendLog } from './log-file.js';
export {
  type EmailTargetConfig,
  NOTIFICATION_EVENTS,
  type NotificationEvent,
  type NotificationTargetConfig,
  SEVERITIES,
  type SecretConfig,
  type Severity,
  type WebhookTargetConfig,
} from './notification-config.js';
export { forgetArchive, type PurgeResult, purgeStore } from './purge.js';
export { type RestoreOptions, restoreToPath, restoreToStream } from './restore.js';
export type { Retention } from './retention.js';
export {
  failedOwnVerification,
  isProtected,
  type Revision,
  type RevisionData,
  type RevisionRetention,
  type RevisionStats,
  type Trust,
  type Verification,
  writeRevisionFile,
} from './revision.js';
export {
  factsOf,
  parseRevisionFacts,
  quickRevisionFacts,
  type RevisionFacts,
  type RevisionWork,
} from './revision-facts.js';
export type { RevisionReader } from './revision-io.js';
export { resolveRevisionSpec, resolveSingleRevision } from './revision-spec.js';
export { MANUAL_TAG_PREFIX, type Schedule, type TagRule } from './schedule.js';
export { type BackupSource, isSourceDefinition, type SourceDefinition } from './source/contract.js';
export { resolveSourcePaths, validateSourceOptions } from './source/options.js';
export type { StoreDriver, StoreDrivers } from './store/contract.js';
export {
  exportKeyFile,
  importKeyFile,
  newKeyFile,
  PASSPHRASE_COMMAND_ENV,
  PASSPHRASE_ENV,
  PASSPHRASE_FILE_ENV,
  parseKeyFile,
  passphraseFrom,
  writeKeyFile,
} from './store/key-file.js';
export { readStoreStats, type StoreStats, writeStoreStats } from './store-stats.js';
export { readTokenFile, tokenMatches } from './token-file.js';
export { formatBytes, formatDuration, parseDuration } from './units.js';
export {
  listenUnixSocket,
  resolveGroup,
  type UnixSocketListener,
  type UnixSocketOptions,
} from './unix-socket.js';
export { type UpgradeResult, type UpgradeStep, upgradeArchive } from './upgrade.js';
export { archiveConfigSchema, revisionSchema, tagNameSchema, type Validator } from './validator.js';
export { type DamagedChunk, type RevisionVerifyResult, verifyRevisions } from './verify.js';
