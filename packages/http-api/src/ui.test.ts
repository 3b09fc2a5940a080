import { readdir, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { parseCentralConfig } from '@backy/core';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiBackend, ApiServer } from './server.js';
import { UI_CSP, UI_DIR } from './ui.js';

const READ = 'read-token-0123456789';
const OPERATOR = 'operator-token-0123456789';

const backend: ApiBackend = {
  jobs: () => [],
  summary: () => ({
    jobs: 0,
    states: {} as ReturnType<ApiBackend['summary']>['states'],
    workerLimit: 1,
    busyWorkers: 0,
    idleWorkers: 1,
    stores: [],
  }),
  runJob: () => 'unknown job',
  reload: async () => ({ ok: true, added: [], removed: [], changed: [] }),
  runs: () => null,
  // The page's files are served without any archive: these are never reached here.
  archives: () => [],
  openArchive: () => Promise.reject(new Error('no archives in this test')),
  verifyRevision: () => 'unknown job',
};

let server: ApiServer;
let url: string;
const get = (path: string, token?: string) =>
  fetch(`${url}${path}`, {
    redirect: 'manual',
    headers: token == null ? {} : { authorization: `Bearer ${token}` },
  });

/** A GET with the path as given: fetch would resolve `..` itself before sending. */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    request(`${url}/`, { path }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (d: string) => {
        body += d;
      });
      response.on('end', () => done({ status: response.statusCode!, body }));
    })
      .on('error', fail)
      .end();
  });
}

beforeAll(async () => {
  const { config } = parseCentralConfig(
    {
      api: {
        listen: '127.0.0.1:0',
        tokens: [
          { name: 'nagios', role: 'read', value: READ },
          { name: 'ops', role: 'operator', value: OPERATOR },
        ],
      },
    },
    'backy.conf',
  );
  server = await ApiServer.start({
    backend,
    config: config.api!,
    logger: pino({ level: 'silent' }),
    version: '9.9.9',
  });
  url = server.urls[0]!;
});

afterAll(() => server.close());

describe('the web page', () => {
  it('is served at /ui/ without a token, with a self-only Content-Security-Policy; / and /ui lead there', async () => {
    for (const path of ['/', '/ui']) {
      const r = await get(path);
      expect([path, r.status, r.headers.get('location')]).toEqual([path, 302, 'ui/']);
      expect(new URL(r.headers.get('location')!, `${url}${path}`).pathname).toBe('/ui/');
    }
    for (const [path, type, file] of [
      ['/ui/', 'text/html; charset=utf-8', 'index.html'],
      ['/ui/index.html', 'text/html; charset=utf-8', 'index.html'],
      ['/ui/app.js', 'text/javascript; charset=utf-8', 'app.js'],
      ['/ui/style.css', 'text/css; charset=utf-8', 'style.css'],
      ['/ui/favicon.svg', 'image/svg+xml', 'favicon.svg'],
    ] as const) {
      const r = await get(path);
      expect([path, r.status]).toEqual([path, 200]);
      expect(r.headers.get('content-type')).toBe(type);
      expect(r.headers.get('content-security-policy')).toBe(UI_CSP);
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      expect(await r.text()).toBe(await readFile(join(UI_DIR, file), 'utf8'));
    }
    expect(UI_CSP).toMatch(/^default-src 'none'; script-src 'self'; style-src 'self';/);
    expect(UI_CSP).not.toMatch(/unsafe|\*|https?:/);
  });

  it('serves only its own files: any other path under /ui/ is 404, nothing outside it is reached', async () => {
    for (const path of [
      '/ui/nope.js',
      '/ui/../package.json',
      '/ui/%2e%2e/package.json',
      '/ui/..%2fpackage.json',
      '/ui/%2e%2e%2fsrc%2fui.ts',
      '/ui/sub/index.html',
    ]) {
      const r = await rawGet(path);
      expect([path, r.status]).toEqual([path, 404]);
      expect(r.body).toBe('not found\n');
    }
    // The JSON API still needs its token.
    expect((await get('/v1/status')).status).toBe(401);
  });

  it('tells the page the role of its token', async () => {
    expect(await (await get('/v1/whoami', READ)).json()).toEqual({ name: 'nagios', role: 'read' });
    expect(await (await get('/v1/whoami', OPERATOR)).json()).toEqual({ name: 'ops', role: 'operator' });
    expect((await get('/v1/whoami')).status).toBe(401);
  });

  it('loads nothing from elsewhere, has no inline script or style, and puts API data in as text only', async () => {
    const files = await readdir(UI_DIR);
    expect(files.sort()).toEqual(['app.js', 'favicon.svg', 'index.html', 'style.css']);
    const html = await readFile(join(UI_DIR, 'index.html'), 'utf8');
    // Every script has a src of its own directory; no <style>, no style= or on…= attributes.
    expect([...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0])).toEqual([
      '<script type="module" src="app.js">',
    ]);
    expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    for (const file of files) {
      // An SVG's namespace is a name, not a place anything is loaded from.
      const text = (await readFile(join(UI_DIR, file), 'utf8')).replace(
        'xmlns="http://www.w3.org/2000/svg"',
        '',
      );
      expect([file, text.match(/\b(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}/gi)]).toEqual([file, null]);
      expect([file, text.match(/@import|url\(/g)]).toEqual([file, null]);
    }
    const js = await readFile(join(UI_DIR, 'app.js'), 'utf8');
    expect(
      js.match(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/g),
    ).toBeNull();
  });
});
