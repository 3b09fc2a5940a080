/**
 * `@backy/http-api`: the scheduler daemon's HTTP API (status, jobs, run, reload under `/v1`, bearer
 * tokens with roles) and its Prometheus metrics; the CLI wires it to the central config's `api`
 * (docs/api.md).
 */
export { type ApiToken, allows, authenticate, loadTokens } from './auth.js';
export { BACKUP_SCHEMAS, type BackupsBackend, type RevisionEntry, revisionEntry } from './backups.js';
export { createMetrics, type MetricsSource } from './metrics.js';
export { type ApiBackend, type ApiOptions, ApiServer } from './server.js';
