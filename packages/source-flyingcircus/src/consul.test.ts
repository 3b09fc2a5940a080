import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { consulHttp, createToken } from '@backy/test-env/consul';
import { describe, expect, it } from 'vitest';
import { aclConsul, consulSkip, consul as plainConsul } from '../test/env.js';
import { ConsulError, ConsulKv, normalizeConsulAddress } from './consul.js';

/** A loopback HTTP server answering every request with `handler`; for garbage and stalls. */
async function fakeServer(
  handler: Parameters<typeof createServer>[1],
): Promise<{ address: string; server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { address: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function closedPortAddress(): Promise<string> {
  const { address, server } = await fakeServer(() => {});
  await new Promise((resolve) => server.close(resolve));
  return address;
}

async function consulError(promise: Promise<unknown>): Promise<ConsulError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConsulError);
  return error as ConsulError;
}

describe('normalizeConsulAddress', () => {
  it('accepts URLs and host:port', () => {
    expect(normalizeConsulAddress('http://127.0.0.1:8500/')).toBe('http://127.0.0.1:8500');
    expect(normalizeConsulAddress('127.0.0.1:8500')).toBe('http://127.0.0.1:8500');
    expect(normalizeConsulAddress('https://consul.example:8501')).toBe('https://consul.example:8501');
  });
  it('rejects nonsense clearly', () => {
    expect(() => normalizeConsulAddress('ftp://x')).toThrow(/only http and https/);
    expect(() => normalizeConsulAddress('http://')).toThrow(/invalid Consul address/);
  });
});

describe('ConsulKv against broken endpoints', () => {
  it('reports an unreachable agent with the address and the cause', async () => {
    const address = await closedPortAddress();
    const error = await consulError(new ConsulKv({ address }).get('snapshot/x'));
    expect(error.kind).toBe('unreachable');
    expect(error.message).toContain(address);
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('gives up on an agent that never answers, within the time limit', async () => {
    const { address, server } = await fakeServer(() => {}); // accepts, never answers
    try {
      const started = Date.now();
      const error = await consulError(
        new ConsulKv({ address, timeoutMs: 300 }).put('snapshot/x', { vm: 'a' }),
      );
      expect(error.kind).toBe('timeout');
      expect(error.message).toMatch(/did not answer PUT .* within 0.3 s/);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('rejects answers that are not the KV API (HTML, wrong JSON, not true/false)', async () => {
    const { address, server } = await fakeServer((req, res) => {
      if (req.method === 'PUT') res.end('<html>proxy login</html>');
      else if (req.url?.includes('recurse')) res.end('{"hello": "world"}');
      else res.end('<html><body>Welcome to nginx!</body></html>');
    });
    try {
      const kv = new ConsulKv({ address });
      const get = await consulError(kv.get('snapshot/x'));
      expect(get.kind).toBe('invalid-response');
      expect(get.message).toContain('not JSON');
      expect(get.message).toContain('nginx');
      const list = await consulError(kv.list('snapshot/'));
      expect(list.kind).toBe('invalid-response');
      expect(list.message).toContain('not a Consul KV answer');
      const put = await consulError(kv.put('snapshot/x', 'v'));
      expect(put.kind).toBe('invalid-response');
      expect(put.message).toContain('instead of true/false');
    } finally {
      server.close();
    }
  });

  it('reports other HTTP errors with status and body', async () => {
    const { address, server } = await fakeServer((_req, res) => {
      res.statusCode = 500;
      res.end('rpc error: No cluster leader');
    });
    try {
      const error = await consulError(new ConsulKv({ address }).keys('snapshot/'));
      expect(error.kind).toBe('http');
      expect(error.status).toBe(500);
      expect(error.message).toContain('500 rpc error: No cluster leader');
    } finally {
      server.close();
    }
  });

  it('passes a caller abort through as is', async () => {
    const { address, server } = await fakeServer(() => {});
    try {
      const controller = new AbortController();
      const pending = new ConsulKv({ address }).get('x', { signal: controller.signal });
      controller.abort(new Error('stop now'));
      await expect(pending).rejects.toThrow('stop now');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe.skipIf(consulSkip != null)('ConsulKv against a real Consul agent', () => {
  const consul = plainConsul!;
  const kv = new ConsulKv({ address: consul?.address ?? 'http://127.0.0.1:1' });

  it('puts, gets, lists and deletes (JSON, strings, odd key characters)', async () => {
    expect(await kv.put('t1/a', { vm: 'test00', snapshot: 'backy-1' })).toBe(true);
    expect(await kv.put('t1/b c', 'plain')).toBe(true);
    expect(await kv.put('t1/sub/ü', Buffer.from([0, 1, 2]))).toBe(true);

    const a = await kv.get('t1/a');
    expect(JSON.parse(a!.value!.toString())).toEqual({ vm: 'test00', snapshot: 'backy-1' });
    expect(a!.modifyIndex).toBeGreaterThan(0);
    expect((await kv.get('t1/b c'))!.value!.toString()).toBe('plain');
    expect([...(await kv.get('t1/sub/ü'))!.value!]).toEqual([0, 1, 2]);
    expect(await kv.get('t1/missing')).toBeNull();

    // The raw API agrees with what the client wrote.
    const raw = await consulHttp(consul, 'GET', '/v1/kv/t1/a?raw');
    expect(JSON.parse(raw.text)).toEqual({ vm: 'test00', snapshot: 'backy-1' });

    const listed = await kv.list('t1/');
    expect(listed.entries.map((e) => e.key).sort()).toEqual(['t1/a', 't1/b c', 't1/sub/ü']);
    expect(listed.index).toBeGreaterThan(0);
    expect((await kv.keys('t1/')).sort()).toEqual(['t1/a', 't1/b c', 't1/sub/ü']);

    expect(await kv.delete('t1/a')).toBe(true);
    expect(await kv.get('t1/a')).toBeNull();
    expect(await kv.delete('t1/a')).toBe(true); // deleting a missing key is fine
    expect(await kv.list('nothing-here/')).toEqual({ entries: [], index: expect.any(Number) });
    expect(await kv.keys('nothing-here/')).toEqual([]);
  });

  it('honours check-and-set on put and delete', async () => {
    await kv.put('t2/x', 'one');
    const entry = (await kv.get('t2/x'))!;
    expect(await kv.put('t2/x', 'two', { cas: entry.modifyIndex })).toBe(true);
    expect(await kv.put('t2/x', 'three', { cas: entry.modifyIndex })).toBe(false);
    expect(await kv.delete('t2/x', { cas: entry.modifyIndex })).toBe(false);
    expect((await kv.get('t2/x'))!.value!.toString()).toBe('two');
    const now = (await kv.get('t2/x'))!;
    expect(await kv.delete('t2/x', { cas: now.modifyIndex })).toBe(true);
  });

  it('blocks on ?index= until the prefix changes', async () => {
    const first = await kv.list('t3/');
    const started = Date.now();
    const waiting = kv.list('t3/', { index: first.index, waitMs: 10_000 });
    setTimeout(() => void kv.put('t3/new', 'hello'), 500);
    const changed = await waiting;
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(400);
    expect(waited).toBeLessThan(5000);
    expect(changed.index).toBeGreaterThan(first.index);
    expect(changed.entries.map((e) => e.key)).toEqual(['t3/new']);
  });

  it('returns after the wait time when nothing changes', async () => {
    const first = await kv.list('t4/');
    const started = Date.now();
    const same = await kv.list('t4/', { index: first.index, waitMs: 1000 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(same.entries).toEqual([]);
  });
});

describe.skipIf(consulSkip != null)('ConsulKv against a Consul agent with ACLs', () => {
  const consul = aclConsul!;

  it('works with a token that may write snapshot/', async () => {
    const token = await createToken(consul, 'backy', 'key_prefix "snapshot/" { policy = "write" }');
    const kv = new ConsulKv({ address: consul.address, token });
    expect(await kv.put('snapshot/t', { vm: 'a', snapshot: 'backy-x' })).toBe(true);
    expect((await kv.list('snapshot/')).entries).toHaveLength(1);
    expect(await kv.delete('snapshot/t')).toBe(true);
  });

  it('reports 403 for an unknown token and for a token without the permission', async () => {
    const unknown = await consulError(
      new ConsulKv({ address: consul.address, token: '00000000-0000-4000-8000-000000000000' }).put(
        'snapshot/t',
        'x',
      ),
    );
    expect(unknown.kind).toBe('forbidden');
    expect(unknown.status).toBe(403);
    expect(unknown.message).toContain('ACL not found');
    expect(unknown.message).toContain('consul_acl_token');

    const readOnly = await createToken(consul, 'reader', 'key_prefix "snapshot/" { policy = "read" }');
    const denied = await consulError(
      new ConsulKv({ address: consul.address, token: readOnly }).put('snapshot/t', 'x'),
    );
    expect(denied.kind).toBe('forbidden');
    expect(denied.message).toContain('Permission denied');

    const anonymous = await consulError(new ConsulKv({ address: consul.address }).put('snapshot/t', 'x'));
    expect(anonymous.kind).toBe('forbidden');
    expect(anonymous.message).toContain('no ACL token was given');
  });
});
