import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackyError } from '@backy/core';
import type { FastifyInstance } from 'fastify';

/**
 * The web page's files: `ui/` beside `src/` and `dist/`, so the same URL resolves from the sources
 * (tests), the build and the packed package (`files` ships `ui`).
 */
export const UI_DIR = fileURLToPath(new URL('../ui/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/**
 * Only the daemon itself: no inline script or style, so that a job name or reason that slipped into
 * the page as markup could still run nothing; no framing, no forms posted elsewhere.
 */
export const UI_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface UiFile {
  type: string;
  body: Buffer;
}

/** The page's files, read once: a fixed set of names, so no request path reaches the file system. */
async function loadUi(dir: string): Promise<Map<string, UiFile>> {
  const files = new Map<string, UiFile>();
  try {
    for (const name of await readdir(dir)) {
      const type = TYPES[extname(name)];
      if (type != null) files.set(name, { type, body: await readFile(join(dir, name)) });
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new BackyError('IO', `the web page's files ${dir}: ${code}`, { cause: error });
  }
  return files;
}

/**
 * Serves the web page at `/ui/` (and redirects `/` there). Its files hold no data, so they need no
 * token; the page asks the user for one and sends it with each call to the JSON API.
 */
export async function registerUi(app: FastifyInstance, dir = UI_DIR): Promise<void> {
  const files = await loadUi(dir);
  // Relative, as the page's own calls are: behind a proxy that maps the daemon under a path it still fits.
  app.get('/', (_request, reply) => reply.redirect('ui/'));
  app.get('/ui', (_request, reply) => reply.redirect('ui/'));
  app.get('/ui/*', (request, reply) => {
    const name = (request.params as { '*': string })['*'] || 'index.html';
    const file = files.get(name);
    reply
      .header('content-security-policy', UI_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      // A new daemon's page is loaded at once, not after a cache's idea of fresh.
      .header('cache-control', 'no-cache');
    if (file == null) return reply.code(404).type('text/plain; charset=utf-8').send('not found\n');
    return reply.type(file.type).send(file.body);
  });
}
