/**
 * `@backy/http-api`: the scheduler daemon's HTTP API (status, jobs, run, reload, archives and revisions under
 * `/v1`, bearer tokens with roles), the web page and its Prometheus metrics (also as a node_exporter textfile); the CLI wires it to the central config's `api`
 * (docs/api.md).
 */
export { type ApiToken, allows, authenticate, loadTokens } from './auth.js';
export { BACKUP_SCHEMAS, type BackupsBackend, type RevisionEntry, revisionEntry } from './backups.js';
export { createMetrics, type MetricsOptions, type MetricsSource } from './metrics.js';
export { MetricsTextfile, type MetricsTextfileOptions } from './metrics-textfile.js';
export { type ApiScheduler, schedulerBackend } from './scheduler-backend.js';
export { type ApiBackend, type ApiOptions, ApiServer } from './server.js';
