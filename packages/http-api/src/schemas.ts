// The JSON Schemas of the API's answers, served at `GET /v1/schema` for clients and documentation. The
// tests validate real answers against them, so they cannot drift from what the daemon sends.
import { BACKUP_SCHEMAS } from './backups.js';

const str = { type: 'string' } as const;
const strOrNull = { type: ['string', 'null'] } as const;
const num = { type: 'number' } as const;
const numOrNull = { type: ['number', 'null'] } as const;
const int = { type: 'integer', minimum: 0 } as const;
const ERROR = { type: 'object', required: ['error'], properties: { error: str } } as const;

const PROGRESS = {
  type: 'object',
  required: ['phase', 'done', 'total', 'rate', 'eta_seconds'],
  properties: { phase: str, done: num, total: num, rate: num, eta_seconds: numOrNull },
} as const;

/** A job's status entry: the status file's fields (docs/scheduler.md). New fields may be added. */
export const JOB_STATUS = {
  type: 'object',
  required: ['job', 'sla', 'sla_overdue', 'status', 'last_time', 'next_time'],
  properties: {
    job: str,
    sla: { enum: ['OK', 'TOO OLD'] },
    sla_overdue: num,
    status: { enum: ['waiting', 'queued', 'running', 'finishing', 'failed'] },
    last_time: strOrNull,
    last_tags: strOrNull,
    last_duration: numOrNull,
    next_time: strOrNull,
    next_tags: strOrNull,
    manual_tags: str,
    last_trust: { enum: ['trusted', 'distrusted', 'verified', null] },
    last_verification: { enum: ['ok', 'failed', null] },
    damaged_revisions: str,
    last_snapshot: strOrNull,
    history_lost: { type: 'boolean' },
    progress: PROGRESS,
    revisions: int,
    last_bytes_read: numOrNull,
    last_bytes_written: numOrNull,
    last_chunks_written: numOrNull,
    last_chunks_reused: numOrNull,
    last_outcome: { enum: ['ok', 'failed', 'verification-failed', 'copy-failed', 'skipped-busy', null] },
    last_reason: strOrNull,
    last_run: strOrNull,
    consecutive_failures: int,
    last_success: strOrNull,
    verify_status: { enum: ['off', 'waiting', 'queued', 'running'] },
    verify_last_time: strOrNull,
    verify_last_result: { enum: ['ok', 'damaged', 'failed', null] },
    verify_next_time: strOrNull,
    verify_damaged: str,
    verify_overdue: int,
    verify_oldest_time: strOrNull,
    fleet_state: { enum: ['assigned', 'unassigned', 'outage'] },
    fleet_owner: strOrNull,
    fleet_server: strOrNull,
    fleet_problem: str,
  },
} as const;

const SUMMARY = {
  type: 'object',
  required: ['jobs', 'states', 'workerLimit', 'busyWorkers', 'idleWorkers', 'stores'],
  properties: {
    jobs: int,
    states: { type: 'object', additionalProperties: int },
    workerLimit: int,
    busyWorkers: int,
    idleWorkers: int,
    stores: { type: 'array', items: { type: 'object' } },
  },
} as const;

const RUN = {
  type: 'object',
  required: ['kind', 'started', 'ended', 'duration', 'outcome', 'reason'],
  properties: {
    kind: { enum: ['backup', 'verify'] },
    started: str,
    ended: str,
    duration: num,
    outcome: str,
    reason: strOrNull,
    tags: { type: 'array', items: str },
    revision: strOrNull,
  },
} as const;

/** Per endpoint (`METHOD /path`): its answers' JSON Schemas by status. */
export const API_SCHEMAS: Record<string, Record<string, unknown>> = {
  'GET /v1/status': {
    200: {
      type: 'object',
      required: ['version', 'summary', 'jobs'],
      properties: { version: str, summary: SUMMARY, jobs: { type: 'array', items: JOB_STATUS } },
    },
    400: ERROR,
  },
  'GET /v1/jobs': {
    200: { type: 'object', required: ['jobs'], properties: { jobs: { type: 'array', items: JOB_STATUS } } },
  },
  'GET /v1/jobs/JOB': { 200: JOB_STATUS, 404: ERROR },
  'GET /v1/jobs/JOB/runs': {
    200: {
      type: 'object',
      required: ['job', 'runs'],
      properties: { job: str, runs: { type: 'array', items: RUN } },
    },
    404: ERROR,
  },
  'POST /v1/jobs/JOB/run': {
    202: { type: 'object', required: ['job', 'result'], properties: { job: str, result: str } },
    404: { type: 'object' },
    409: { type: 'object' },
    503: { type: 'object' },
  },
  'POST /v1/reload': {
    200: { type: 'object', required: ['ok'] },
    422: { type: 'object', required: ['ok', 'error'] },
  },
  'GET /v1/backups': BACKUP_SCHEMAS.list.response,
  'GET /v1/backups/NAME': BACKUP_SCHEMAS.backup.response,
  'GET /v1/backups/NAME/revs/SPEC': BACKUP_SCHEMAS.revision.response,
  'PUT /v1/backups/NAME/revs/SPEC/tags': BACKUP_SCHEMAS.tags.response,
  'POST /v1/backups/NAME/revs/SPEC/distrust': BACKUP_SCHEMAS.revision.response,
  'POST /v1/backups/NAME/revs/SPEC/protect': BACKUP_SCHEMAS.revision.response,
  'POST /v1/backups/NAME/revs/SPEC/unprotect': BACKUP_SCHEMAS.revision.response,
  'POST /v1/backups/NAME/revs/SPEC/verify': BACKUP_SCHEMAS.verify.response,
  'GET /v1/whoami': {
    200: {
      type: 'object',
      required: ['name', 'role'],
      properties: { name: str, role: { enum: ['read', 'operator'] } },
    },
  },
  'GET /metrics': { 200: { type: 'string', description: 'Prometheus text format 0.0.4' } },
  '(any)': { 401: ERROR },
};
