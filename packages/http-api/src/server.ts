import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { type ApiConfig, type ApiRole, BackyError } from '@backy/core';
import type { JobStatus, NameFilter, RunRecord, SchedulerSummary } from '@backy/scheduler';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import { RE2JS } from 're2js';
import { type ApiToken, allows, authenticate, loadTokens } from './auth.js';
import { type BackupsBackend, registerBackupRoutes, statusOfError } from './backups.js';
import { createMetrics } from './metrics.js';
import { API_SCHEMAS } from './schemas.js';
import { registerUi } from './ui.js';

/** What the API reads and steers: the scheduler (the same view the telnet shell has) and its jobs' archives. */
export interface ApiBackend extends BackupsBackend {
  jobs(filter?: NameFilter): JobStatus[];
  summary(): SchedulerSummary;
  runJob(name: string): 'started' | 'queued' | 'already running' | 'unknown job' | 'stopping';
  /** The job's recent runs, newest first, or null for an unknown job. */
  runs(name: string): RunRecord[] | null;
  reload(): Promise<
    { ok: true; added: string[]; removed: string[]; changed: string[] } | { ok: false; error: string }
  >;
}

export interface ApiOptions {
  backend: ApiBackend;
  config: ApiConfig;
  logger: Logger;
  version: string;
}

/** Loopback: where listening needs no warning. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

const RUN_STATUS: Record<ReturnType<ApiBackend['runJob']>, number> = {
  started: 202,
  queued: 202,
  'already running': 409,
  'unknown job': 404,
  stopping: 503,
};

/**
 * The daemon's HTTP API (docs/api.md) on fastify, which logs through pino as the daemon does and
 * validates and serialises routes with JSON Schema. Every request needs `Authorization: Bearer TOKEN`;
 * a missing or wrong token, or a `read` token where `operator` is needed, gets 401 and nothing else.
 */
export class ApiServer {
  private constructor(
    private readonly app: FastifyInstance,
    /** `http://127.0.0.1:6080`, one per listening address. */
    readonly urls: string[],
  ) {}

  static async start(options: ApiOptions): Promise<ApiServer> {
    const { config, logger, backend } = options;
    const tokens = await loadTokens(config.tokens);
    const https =
      config.tls == null
        ? null
        : {
            cert: await readPem(config.tls.cert, 'api.tls.cert'),
            key: await readPem(config.tls.key, 'api.tls.key'),
          };
    const app = Fastify({
      loggerInstance: logger,
      // One line per request would drown the daemon's log (Prometheus scrapes, the page polls every 2 s).
      logController: new LogController({ disableRequestLogging: true }),
      // What the route schemas say is what is taken: no string turned into a list, no key dropped.
      ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
      ...(https != null ? { https } : {}),
    }) as unknown as FastifyInstance;
    const metrics = createMetrics({
      jobs: () => backend.jobs(),
      summary: () => backend.summary(),
      version: options.version,
    });

    const guard = (needed: ApiRole) => async (request: FastifyRequest, reply: FastifyReply) => {
      const token = authenticate(tokens, request.headers.authorization);
      if (token == null || !allows(token.role, needed)) {
        reply.header('www-authenticate', 'Bearer realm="backy"');
        return reply.code(401).send({
          error:
            token == null
              ? 'unauthorized'
              : `token ${token.name} (role ${token.role}) may not do this: it needs role ${needed}`,
        });
      }
      (request as FastifyRequest & { token?: ApiToken }).token = token;
    };
    const tokenOf = (request: FastifyRequest) => (request as FastifyRequest & { token?: ApiToken }).token;
    const who = (request: FastifyRequest) => tokenOf(request)?.name;
    app.setErrorHandler(errorHandler(logger));

    await registerUi(app);
    app.get('/v1/status', { onRequest: guard('read') }, async (request, reply) => {
      const pattern = (request.query as { filter?: string }).filter;
      let filter: NameFilter | undefined;
      if (pattern != null && pattern !== '') {
        try {
          const re = RE2JS.compile(pattern);
          filter = { test: (name) => re.matcher(name).find() };
        } catch (error) {
          return reply.code(400).send({ error: `filter: ${(error as Error).message}` });
        }
      }
      return { version: options.version, summary: backend.summary(), jobs: backend.jobs(filter) };
    });
    app.get('/v1/jobs', { onRequest: guard('read') }, async () => ({ jobs: backend.jobs() }));
    app.get('/v1/schema', { onRequest: guard('read') }, async () => ({ version: 1, endpoints: API_SCHEMAS }));
    app.get('/v1/jobs/:job', { onRequest: guard('read') }, async (request, reply) => {
      const name = (request.params as { job: string }).job;
      const job = backend.jobs().find((j) => j.job === name);
      return job ?? reply.code(404).send({ error: `unknown job ${JSON.stringify(name)}` });
    });
    app.get('/v1/jobs/:job/runs', { onRequest: guard('read') }, async (request, reply) => {
      const name = (request.params as { job: string }).job;
      const runs = backend.runs(name);
      if (runs == null) return reply.code(404).send({ error: `unknown job ${JSON.stringify(name)}` });
      return { job: name, runs: runs.map(runEntry) };
    });
    app.post('/v1/jobs/:job/run', { onRequest: guard('operator') }, async (request, reply) => {
      const name = (request.params as { job: string }).job;
      const result = backend.runJob(name);
      logger.info({ job: name, token: who(request), result }, 'API: run');
      return reply.code(RUN_STATUS[result]).send({ job: name, result });
    });
    app.post('/v1/reload', { onRequest: guard('operator') }, async (request, reply) => {
      logger.info({ token: who(request) }, 'API: reload');
      const result = await backend.reload();
      return reply.code(result.ok ? 200 : 422).send(result);
    });
    app.get('/v1/whoami', { onRequest: guard('read'), schema: WHOAMI_SCHEMA }, async (request) => {
      const { name, role } = tokenOf(request)!;
      return { name, role };
    });
    registerBackupRoutes(app, {
      backend,
      logger,
      read: guard('read'),
      operator: guard('operator'),
      tokenName: who,
    });
    app.get('/metrics', { onRequest: guard('read') }, async (_request, reply) => {
      reply.header('content-type', metrics.contentType);
      return metrics.metrics();
    });
    app.setNotFoundHandler({ preHandler: guard('read') }, (request, reply) =>
      reply.code(404).send({ error: `no such endpoint: ${request.method} ${request.url.split('?')[0]}` }),
    );

    const urls: string[] = [];
    try {
      for (const { host, port } of config.listen) {
        const url = await app.listen({ host, port });
        urls.push(url);
        if (!isLoopback(host))
          logger.warn(
            { host, port },
            `the HTTP API listens beyond loopback on ${host}${config.tls == null ? ' without TLS: tokens cross the network in clear' : ''}`,
          );
      }
    } catch (error) {
      await app.close();
      const e = error as NodeJS.ErrnoException;
      throw new BackyError('CONFIG_INVALID', `api.listen: cannot listen: ${e.code ?? e.message}`, {
        cause: error,
      });
    }
    logger.info({ urls }, 'HTTP API listening');
    return new ApiServer(app, urls);
  }

  async close(): Promise<void> {
    await this.app.close();
  }
}

const WHOAMI_SCHEMA = {
  response: {
    200: {
      type: 'object',
      required: ['name', 'role'],
      properties: { name: { type: 'string' }, role: { type: 'string', enum: ['read', 'operator'] } },
    },
  },
} as const;

/** A run as the API shows it: ISO times and seconds, as the status entries. */
function runEntry(run: RunRecord) {
  const { started, ended, ...rest } = run;
  return {
    ...rest,
    started: new Date(started).toISOString(),
    ended: new Date(ended).toISOString(),
    duration: Math.round(ended - started) / 1000,
  };
}

type RouteError = Error & { validation?: unknown; statusCode?: number };

/**
 * Bad input (a body against its schema, a revision that is not there, a locked archive) is one `error`
 * line with its status; anything else is logged, and the client learns no more than 500 and its message.
 */
function errorHandler(logger: Logger) {
  return (error: RouteError, request: FastifyRequest, reply: FastifyReply) => {
    // fastify's message names the part and the key: `body must have required property 'new_tags'`.
    if (error.validation != null) return reply.code(400).send({ error: error.message });
    const status = statusOfError(error);
    if (status === 500 && error.statusCode != null && error.statusCode < 500)
      return reply.code(error.statusCode).send({ error: error.message });
    if (status === 500) logger.error({ err: error, url: request.url.split('?')[0] }, 'API: request failed');
    return reply.code(status).send({ error: error.message });
  };
}

async function readPem(path: string, key: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new BackyError(
      'CONFIG_INVALID',
      `${key} ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      {
        cause: error,
      },
    );
  }
}
