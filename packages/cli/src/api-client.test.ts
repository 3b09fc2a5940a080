import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApiConfig } from '@backy/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiTarget, apiUrl } from './api-client.js';

const READ = 'read-token-0123456789';
const OPS = 'operator-token-0123456789';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backy-api-client-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const config = (tokens: ApiConfig['tokens'], listen = [{ host: '127.0.0.1', port: 6080 }]): ApiConfig => ({
  listen,
  tokens,
});

describe('the API client: which URL and which token', () => {
  it('reaches the first listening address, a wildcard one on loopback, with https when tls is set', () => {
    expect(
      apiUrl(
        config(
          [],
          [
            { host: '0.0.0.0', port: 1 },
            { host: '10.0.0.1', port: 2 },
          ],
        ),
      ),
    ).toBe('http://127.0.0.1:1');
    expect(apiUrl(config([], [{ host: '::', port: 6080 }]))).toBe('http://[::1]:6080');
    expect(apiUrl({ ...config([], [{ host: '::1', port: 6080 }]), tls: { cert: '/c', key: '/k' } })).toBe(
      'https://[::1]:6080',
    );
  });

  it('takes --token-file, else $BACKY_API_TOKEN, else the least sufficient role this user can read', async () => {
    const unreadable = join(dir, 'unreadable.token');
    await writeFile(unreadable, `${READ}\n`, { mode: 0o644 });
    const readFile = join(dir, 'read.token');
    await writeFile(readFile, `${READ}\n`, { mode: 0o600 });
    const tokens: ApiConfig['tokens'] = [
      { name: 'ops', role: 'operator', value: OPS },
      // Readable by others: the daemon refuses such a file, and so does the client.
      { name: 'loose', role: 'read', file: unreadable },
      { name: 'nagios', role: 'read', file: readFile },
    ];
    const env = {};
    // A read token for reading, though an operator token comes first; an operator one for running.
    expect(await apiTarget(config(tokens), { role: 'read', env })).toMatchObject({
      token: READ,
      tokenSource: 'api.tokens.2 (nagios)',
      ca: null,
      url: 'http://127.0.0.1:6080',
    });
    expect(await apiTarget(config(tokens), { role: 'operator', env })).toMatchObject({
      token: OPS,
      tokenSource: 'api.tokens.0 (ops)',
    });
    expect(
      await apiTarget(config(tokens), { role: 'operator', env: { BACKY_API_TOKEN: ' given-0123456789 ' } }),
    ).toMatchObject({ token: 'given-0123456789', tokenSource: '$BACKY_API_TOKEN' });
    expect(
      await apiTarget(config(tokens), { role: 'read', tokenFile: readFile, env: { BACKY_API_TOKEN: 'x' } }),
    ).toMatchObject({ token: READ, tokenSource: `--token-file ${readFile}` });
    await expect(apiTarget(config(tokens), { role: 'read', tokenFile: unreadable, env })).rejects.toThrow(
      `--token-file ${unreadable} is accessible to other users (mode 644); chmod o-rwx it`,
    );
    // Only a read token to be had: run cannot send one, and says why each was passed over.
    await expect(apiTarget(config(tokens.slice(1)), { role: 'operator', env })).rejects.toThrow(
      /^no API token with role operator that this user can read: give --token-file FILE or \$BACKY_API_TOKEN$/,
    );
    // A token file this user cannot read (EACCES as another user, here: gone) is passed over too.
    const gone = join(dir, 'gone.token');
    await expect(
      apiTarget(config([tokens[1]!, { name: 'nagios', role: 'read', file: gone }]), { role: 'read', env }),
    ).rejects.toThrow(
      `no API token with role read that this user can read: give --token-file FILE or $BACKY_API_TOKEN (api.tokens.0.file ${unreadable} is accessible to other users (mode 644); chmod o-rwx it; api.tokens.1.file ${gone}: ENOENT)`,
    );
  });

  it('trusts api.tls.cert for HTTPS, and names it when it cannot be read', async () => {
    const cert = join(dir, 'api.crt');
    await writeFile(cert, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const tls = { cert, key: join(dir, 'api.key') };
    const target = await apiTarget(
      { ...config([{ name: 'n', role: 'read', value: READ }]), tls },
      { role: 'read', env: {} },
    );
    expect(target.url).toBe('https://127.0.0.1:6080');
    expect(target.ca?.at(-1)).toContain('MIIB');
    expect(target.ca!.length).toBeGreaterThan(1);
    await expect(
      apiTarget(
        { ...config([]), tls: { ...tls, cert: join(dir, 'missing.crt') } },
        { role: 'read', env: {} },
      ),
    ).rejects.toThrow(`api.tls.cert ${join(dir, 'missing.crt')}: ENOENT`);
  });
});
