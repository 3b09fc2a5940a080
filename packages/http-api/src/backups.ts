import {
  type Archive,
  BackyError,
  isBackyError,
  type Lock,
  type Revision,
  readRevisions,
  resolveSingleRevision,
  tagNameSchema,
} from '@backy/core';
import type { VerifyNowResult } from '@backy/scheduler';
import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { Logger } from 'pino';

// The archives ("backups") and their revisions under /v1/backups (docs/api.md). Reads come from each
// job's archive directory, as the scheduler reads it (no store round trip per request); changes open the
// archive with the daemon's store drivers and go through core's revision writes under its backup lock,
// as `backy tags` and `backy distrust` do.

/** What the daemon gives these routes: its jobs' archives, and a verify run through its verify jobs. */
export interface BackupsBackend {
  /** Each job's archive directory, sorted by job name. */
  archives(): { job: string; dir: string }[];
  /** Opens the archive at `dir` (with the daemon's store drivers) to change its revisions. */
  openArchive(dir: string): Promise<Archive>;
  /** Verifies revision `uuid` of `job` as a verify job: a worker of the limit, the outcome in its status. */
  verifyRevision(job: string, uuid: string): VerifyNowResult;
}

/** A revision as the API shows it. */
export interface RevisionEntry {
  uuid: string;
  timestamp: string;
  tags: string[];
  trust: Revision['trust'];
  parent: string | null;
  size: number;
  bytes_written: number;
  duration: number | null;
  /** Set aside from every deletion by `backy protect`. */
  protected: boolean;
}

export function revisionEntry(rev: Revision): RevisionEntry {
  return {
    uuid: rev.uuid,
    timestamp: new Date(rev.timestamp).toISOString(),
    tags: rev.tags,
    trust: rev.trust,
    parent: rev.parent ?? null,
    size: rev.size,
    bytes_written: rev.stats.bytes_written,
    // backy 2.x revisions converted without a duration say 0: not known.
    duration: Number.isFinite(rev.stats.duration) && rev.stats.duration > 0 ? rev.stats.duration : null,
    protected: rev.protected === true,
  };
}

const ERROR = { type: 'object', properties: { error: { type: 'string' } }, required: ['error'] } as const;

const REVISION = {
  type: 'object',
  required: [
    'uuid',
    'timestamp',
    'tags',
    'trust',
    'parent',
    'size',
    'bytes_written',
    'duration',
    'protected',
  ],
  properties: {
    uuid: { type: 'string' },
    timestamp: { type: 'string', format: 'date-time' },
    tags: { type: 'array', items: { type: 'string' } },
    trust: { type: 'string', enum: ['trusted', 'distrusted', 'verified'] },
    parent: { type: ['string', 'null'] },
    size: { type: 'integer', description: 'bytes of the image' },
    bytes_written: { type: 'integer', description: 'bytes the backup stored' },
    duration: { type: ['number', 'null'], description: 'seconds the backup took; null: not known' },
    protected: { type: 'boolean' },
  },
} as const;

const TAGS = { type: 'array', items: { type: 'string' }, maxItems: 1000 } as const;

/** The route schemas (JSON Schema): what each endpoint takes and answers. */
export const BACKUP_SCHEMAS = {
  list: {
    response: {
      200: {
        type: 'object',
        required: ['backups'],
        properties: {
          backups: {
            type: 'array',
            items: {
              type: 'object',
              required: ['name', 'revisions', 'newest'],
              properties: {
                name: { type: 'string' },
                revisions: { type: 'integer' },
                newest: { anyOf: [REVISION, { type: 'null' }] },
              },
            },
          },
        },
      },
    },
  },
  backup: {
    params: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
    response: {
      200: {
        type: 'object',
        required: ['name', 'revisions'],
        properties: { name: { type: 'string' }, revisions: { type: 'array', items: REVISION } },
      },
      404: ERROR,
    },
  },
  revision: {
    params: {
      type: 'object',
      required: ['name', 'spec'],
      properties: { name: { type: 'string' }, spec: { type: 'string' } },
    },
    response: { 200: REVISION, 400: ERROR, 404: ERROR, 503: ERROR },
  },
  tags: {
    body: {
      type: 'object',
      required: ['old_tags', 'new_tags'],
      additionalProperties: false,
      properties: { old_tags: TAGS, new_tags: TAGS },
    },
    response: { 200: REVISION, 400: ERROR, 404: ERROR, 412: ERROR, 503: ERROR },
  },
  verify: {
    response: {
      202: {
        type: 'object',
        required: ['job', 'revision', 'result'],
        properties: {
          job: { type: 'string' },
          revision: { type: 'string' },
          result: { type: 'string', enum: ['started', 'queued'] },
        },
      },
      404: ERROR,
      409: ERROR,
      503: ERROR,
    },
  },
} as const;

/** What the routes need of the server: its guards and the name of the token a request came with. */
export interface BackupRoutesContext {
  backend: BackupsBackend;
  logger: Logger;
  read: onRequestHookHandler;
  operator: onRequestHookHandler;
  tokenName(request: FastifyRequest): string | undefined;
}

type RevisionParams = { name: string; spec: string };

/** Registers the `/v1/backups` routes. Errors are BackyErrors; the server's error handler answers them. */
export function registerBackupRoutes(app: FastifyInstance, context: BackupRoutesContext): void {
  registerReads(app, context);
  registerChanges(app, context);
}

/** The job's archive directory (404 for an unknown job). */
function dirOf(backend: BackupsBackend, name: string): string {
  const found = backend.archives().find((a) => a.job === name);
  if (found == null) throw new BackyError('ARCHIVE_NOT_FOUND', `unknown job ${JSON.stringify(name)}`);
  return found.dir;
}

/** The revision SPEC names in the job's archive directory (404 for none, 400 for more than one). */
async function revisionOf(backend: BackupsBackend, { name, spec }: RevisionParams) {
  const dir = dirOf(backend, name);
  return { dir, revision: resolveSingleRevision(await readRevisions(dir), spec) };
}

function registerReads(app: FastifyInstance, { backend, read }: BackupRoutesContext): void {
  app.get('/v1/backups', { onRequest: read, schema: BACKUP_SCHEMAS.list }, async () => {
    const backups = [];
    for (const { job, dir } of backend.archives()) {
      const revisions = await readRevisions(dir);
      const newest = revisions.at(-1);
      backups.push({
        name: job,
        revisions: revisions.length,
        newest: newest == null ? null : revisionEntry(newest),
      });
    }
    return { backups };
  });

  app.get('/v1/backups/:name', { onRequest: read, schema: BACKUP_SCHEMAS.backup }, async (request) => {
    const { name } = request.params as { name: string };
    return { name, revisions: (await readRevisions(dirOf(backend, name))).map(revisionEntry) };
  });

  app.get(
    '/v1/backups/:name/revs/:spec',
    { onRequest: read, schema: BACKUP_SCHEMAS.revision },
    async (request) => revisionEntry((await revisionOf(backend, request.params as RevisionParams)).revision),
  );
}

function registerChanges(app: FastifyInstance, context: BackupRoutesContext): void {
  const { backend, logger, operator, tokenName } = context;
  app.put(
    '/v1/backups/:name/revs/:spec/tags',
    { onRequest: operator, schema: { ...BACKUP_SCHEMAS.revision, ...BACKUP_SCHEMAS.tags } },
    async (request, reply) => {
      const params = request.params as RevisionParams;
      const body = request.body as { old_tags: string[]; new_tags: string[] };
      const newTags = checkedTags(body.new_tags);
      const { dir, revision } = await revisionOf(backend, params);
      return changeRevision(backend, dir, revision.uuid, async (archive, current) => {
        if (!sameSet(current.tags, body.old_tags)) {
          reply.code(412);
          return {
            error: `revision ${current.uuid} has tags [${current.tags.join(', ')}], not [${body.old_tags.join(', ')}]: they changed meanwhile`,
          };
        }
        const done = await archive.updateRevision(current.uuid, (rev) => ({ ...rev, tags: newTags }));
        if (done == null) throw gone(current.uuid);
        const { name: job } = params;
        const token = tokenName(request);
        logger.info(
          { job, revision: done.uuid, token, old_tags: current.tags, new_tags: done.tags },
          'API: tags changed',
        );
        return revisionEntry(done);
      });
    },
  );

  app.post(
    '/v1/backups/:name/revs/:spec/distrust',
    { onRequest: operator, schema: BACKUP_SCHEMAS.revision },
    async (request) => {
      const params = request.params as RevisionParams;
      const { dir, revision } = await revisionOf(backend, params);
      return changeRevision(backend, dir, revision.uuid, async (archive, current) => {
        const done = await archive.updateRevision(current.uuid, (rev) => ({ ...rev, trust: 'distrusted' }));
        if (done == null) throw gone(current.uuid);
        logger.info(
          { job: params.name, revision: done.uuid, token: tokenName(request) },
          'API: revision distrusted',
        );
        return revisionEntry(done);
      });
    },
  );

  for (const on of [true, false]) {
    const action = on ? 'protect' : 'unprotect';
    app.post(
      `/v1/backups/:name/revs/:spec/${action}`,
      { onRequest: operator, schema: BACKUP_SCHEMAS.revision },
      async (request) => {
        const params = request.params as RevisionParams;
        const { dir, revision } = await revisionOf(backend, params);
        return changeRevision(backend, dir, revision.uuid, async (archive, current) => {
          // As `backy protect`/`unprotect`: expire, forget and purge leave a protected revision alone.
          const done = await archive.updateRevision(current.uuid, ({ protected: _was, ...rev }) =>
            on ? { ...rev, protected: true } : rev,
          );
          if (done == null) throw gone(current.uuid);
          logger.info(
            { job: params.name, revision: done.uuid, token: tokenName(request) },
            `API: revision ${action}ed`,
          );
          return revisionEntry(done);
        });
      },
    );
  }

  app.post(
    '/v1/backups/:name/revs/:spec/verify',
    { onRequest: operator, schema: { params: BACKUP_SCHEMAS.revision.params, ...BACKUP_SCHEMAS.verify } },
    async (request, reply) => {
      const params = request.params as RevisionParams;
      const { revision } = await revisionOf(backend, params);
      const result = backend.verifyRevision(params.name, revision.uuid);
      logger.info(
        { job: params.name, revision: revision.uuid, token: tokenName(request), result },
        'API: verify',
      );
      if (result === 'started' || result === 'queued')
        return reply.code(202).send({ job: params.name, revision: revision.uuid, result });
      const [status, error] = VERIFY_REFUSED[result];
      return reply.code(status).send({ error: `${params.name}: ${error}` });
    },
  );
}

/** `new_tags` without repeats; a name a tag may not have is a 400 naming it. */
function checkedTags(tags: readonly string[]): string[] {
  for (const tag of tags) {
    const ok = tagNameSchema.safeParse(tag);
    if (!ok.success)
      throw new BackyError(
        'USAGE',
        `new_tags: invalid tag ${JSON.stringify(tag)}: ${ok.error.issues[0]?.message}`,
      );
  }
  return [...new Set(tags)];
}

/**
 * Runs `work` on the revision `uuid` as it is now, holding the archive's backup lock (as `backy tags`
 * does): nothing else changes the revision list or its tags meanwhile. A held lock is a 503.
 */
async function changeRevision<T>(
  backend: BackupsBackend,
  dir: string,
  uuid: string,
  work: (archive: Archive, current: Revision) => Promise<T>,
): Promise<T> {
  const archive = await backend.openArchive(dir);
  let lock: Lock;
  try {
    lock = await archive.lockBackup();
  } catch (error) {
    if (isBackyError(error, 'LOCKED'))
      throw new BackyError('LOCKED', `${error.message}; try again when it is done`, { cause: error });
    throw error;
  }
  try {
    const current = (await archive.revisions()).find((r) => r.uuid === uuid);
    if (current == null) throw gone(uuid);
    // A remote store's writer lease that lapsed meanwhile lets no change through.
    await lock.refresh?.();
    lock.assertHeld?.();
    return await work(archive, current);
  } finally {
    await lock.release();
  }
}

const VERIFY_REFUSED: Record<Exclude<VerifyNowResult, 'started' | 'queued'>, [404 | 409 | 503, string]> = {
  'already running': [409, 'a verify of this job is running or waiting for a worker already'],
  'unknown job': [404, 'unknown job'],
  stopping: [503, 'the daemon is stopping'],
  'not available': [503, 'this daemon cannot run verify jobs'],
};

const gone = (uuid: string) => new BackyError('REVISION_NOT_FOUND', `revision ${uuid} no longer exists`);

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const x = new Set(a);
  const y = new Set(b);
  return x.size === y.size && [...x].every((t) => y.has(t));
}

/** The HTTP status of an error a route threw: the BackyError codes a request can cause. */
export function statusOfError(error: unknown): number {
  if (!isBackyError(error)) return 500;
  switch (error.code) {
    case 'ARCHIVE_NOT_FOUND':
    case 'REVISION_NOT_FOUND':
      return 404;
    case 'REVISION_AMBIGUOUS':
    case 'USAGE':
      return 400;
    case 'LOCKED':
      return 503;
    default:
      return 500;
  }
}
