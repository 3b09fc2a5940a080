import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { type ApiConfig, type ApiRole, BackyError } from '@backy/core';
import type { JobStatus, NameFilter, SchedulerSummary } from '@backy/scheduler';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { RE2JS } from 're2js';
import { allows, authenticate, loadTokens } from './auth.js';
import { createMetrics } from './metrics.js';
import { registerUi } from './ui.js';

/** What the API reads and steers: the scheduler (the same view the telnet shell has). */
export interface ApiBackend {
  jobs(filter?: NameFilter): JobStatus[];
  summary(): SchedulerSummary;
  runJob(name: string): 'started' | 'queued' | 'already running' | 'unknown job' | 'stopping';
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
      disableRequestLogging: true,
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
      (request as FastifyRequest & { tokenName?: string }).tokenName = token.name;
    };
    const who = (request: FastifyRequest) => (request as FastifyRequest & { tokenName?: string }).tokenName;

    await registerUi(app);
    // Minimal stand-in for the web page until the revisions API (h-revapi) brings its own: drop on merge.
    app.get('/v1/whoami', { onRequest: guard('read') }, async (request) => {
      const token = authenticate(tokens, request.headers.authorization)!;
      return { name: token.name, role: token.role };
    });
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
    app.get('/v1/jobs/:job', { onRequest: guard('read') }, async (request, reply) => {
      const name = (request.params as { job: string }).job;
      const job = backend.jobs().find((j) => j.job === name);
      return job ?? reply.code(404).send({ error: `unknown job ${JSON.stringify(name)}` });
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
