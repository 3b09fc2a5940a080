import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { consulHttp, consulMissing, createToken, startConsul } from './consul.js';

const missing = consulMissing();
if (missing != null) console.warn(`[test-env] Consul agent tests skipped: ${missing}`);

describe.skipIf(missing != null)('the Consul dev agents of the tests (startConsul)', () => {
  it('serves the KV API on loopback until stopped, and leaves no state behind', async () => {
    const consul = await startConsul();
    try {
      expect(consul.address).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(consul.token).toBeNull();
      expect((await consulHttp(consul, 'PUT', '/v1/kv/test-env', { body: 'value' })).status).toBe(200);
      expect((await consulHttp(consul, 'GET', '/v1/kv/test-env?raw')).text).toBe('value');
    } finally {
      await consul.stop();
    }
    expect(existsSync(consul.dir)).toBe(false);
    await expect(consulHttp(consul, 'GET', '/v1/kv/test-env?raw')).rejects.toThrow();
  });

  it('with acl, refuses a request without a token and takes one with a token from createToken', async () => {
    const consul = await startConsul({ acl: true });
    try {
      expect(consul.token).toMatch(/^[0-9a-f-]{36}$/);
      expect((await consulHttp(consul, 'PUT', '/v1/kv/test-env/a', { body: 'x' })).status).toBe(403);
      const token = await createToken(consul, 'test-env', 'key_prefix "test-env/" { policy = "write" }');
      expect((await consulHttp(consul, 'PUT', '/v1/kv/test-env/a', { token, body: 'x' })).status).toBe(200);
    } finally {
      await consul.stop();
    }
  });
});
