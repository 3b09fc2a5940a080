import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { consulHttp, consulMissing, createToken, startConsul, type TestConsul } from '@backy/test-env/consul';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsulClient } from './client.js';
import { ConsulError, normalizeConsulAddress } from './error.js';

// A Consul dev agent and a second one with ACLs enforced, for the whole file; the broken endpoints are
// loopback servers of the test's own.
const consulSkip = consulMissing();
if (consulSkip != null) console.warn(`[consul] tests needing Consul are skipped: ${consulSkip}`);
let plainConsul: TestConsul | null = null;
let aclConsul: TestConsul | null = null;

beforeAll(async () => {
  if (consulSkip != null) return;
  [plainConsul, aclConsul] = await Promise.all([startConsul(), startConsul({ acl: true })]);
}, 120_000);
afterAll(async () => {
  await Promise.all([plainConsul?.stop(), aclConsul?.stop()]);
});

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

describe('ConsulClient against broken endpoints', () => {
  it('reports an unreachable agent with the address and the cause', async () => {
    const address = await closedPortAddress();
    const error = await consulError(new ConsulClient({ address }).get('snapshot/x'));
    expect(error.kind).toBe('unreachable');
    expect(error.message).toContain(address);
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('gives up on an agent that never answers, within the time limit', async () => {
    const { address, server } = await fakeServer(() => {}); // accepts, never answers
    try {
      const started = Date.now();
      const error = await consulError(
        new ConsulClient({ address, timeoutMs: 300 }).put('snapshot/x', { vm: 'a' }),
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
      const kv = new ConsulClient({ address });
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

  it('reports other HTTP errors with status and body on one line, and tells a cluster without a leader', async () => {
    const { address, server } = await fakeServer((req, res) => {
      res.statusCode = 500;
      res.end(
        req.url?.startsWith('/v1/kv/down/')
          ? 'rpc error: No cluster leader'
          : 'internal error:\n  disk full\n',
      );
    });
    try {
      const client = new ConsulClient({ address });
      const error = await consulError(client.keys('snapshot/'));
      expect(error.kind).toBe('http');
      expect(error.status).toBe(500);
      expect(error.message).toBe(
        `Consul answered GET ${address}/v1/kv/snapshot/ with 500 internal error: disk full`,
      );
      const leaderless = await consulError(client.keys('down/'));
      expect(leaderless.kind).toBe('no-leader');
      expect(leaderless.status).toBe(500);
      expect(leaderless.message).toBe(
        `Consul has no cluster leader (GET ${address}/v1/kv/down/: 500 rpc error: No cluster leader)`,
      );
    } finally {
      server.close();
    }
  });

  it('passes a caller abort through as is', async () => {
    const { address, server } = await fakeServer(() => {});
    try {
      const controller = new AbortController();
      const pending = new ConsulClient({ address }).get('x', { signal: controller.signal });
      controller.abort(new Error('stop now'));
      await expect(pending).rejects.toThrow('stop now');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe.skipIf(consulSkip != null)('ConsulClient against a real Consul agent', () => {
  let consul: TestConsul;
  let kv: ConsulClient;
  beforeAll(() => {
    consul = plainConsul!;
    kv = new ConsulClient({ address: consul.address });
  });

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

describe.skipIf(consulSkip != null)('ConsulClient against a Consul agent with ACLs', () => {
  let consul: TestConsul;
  beforeAll(() => {
    consul = aclConsul!;
  });

  it('works with a token that may write snapshot/', async () => {
    const token = await createToken(consul, 'backy', 'key_prefix "snapshot/" { policy = "write" }');
    const kv = new ConsulClient({ address: consul.address, token });
    expect(await kv.put('snapshot/t', { vm: 'a', snapshot: 'backy-x' })).toBe(true);
    expect((await kv.list('snapshot/')).entries).toHaveLength(1);
    expect(await kv.delete('snapshot/t')).toBe(true);
  });

  it('reports 403 for an unknown token and for a token without the permission', async () => {
    const unknown = await consulError(
      new ConsulClient({
        address: consul.address,
        token: '00000000-0000-4000-8000-000000000000',
        tokenSetting: 'consul_acl_token',
      }).put('snapshot/t', 'x'),
    );
    expect(unknown.kind).toBe('forbidden');
    expect(unknown.status).toBe(403);
    expect(unknown.message).toContain('ACL not found');
    expect(unknown.message).toContain('(check the ACL token in consul_acl_token and its policy)');

    const readOnly = await createToken(consul, 'reader', 'key_prefix "snapshot/" { policy = "read" }');
    const denied = await consulError(
      new ConsulClient({ address: consul.address, token: readOnly }).put('snapshot/t', 'x'),
    );
    expect(denied.kind).toBe('forbidden');
    expect(denied.message).toContain('Permission denied');

    const anonymous = await consulError(new ConsulClient({ address: consul.address }).put('snapshot/t', 'x'));
    expect(anonymous.kind).toBe('forbidden');
    expect(anonymous.message).toMatch(/\(no ACL token was given\)$/);
    const unset = await consulError(
      new ConsulClient({ address: consul.address, tokenSetting: 'fleet.token-file' }).createSession({
        name: 'x',
        ttlSeconds: 10,
        lockDelaySeconds: 1,
      }),
    );
    expect(unset.message).toMatch(
      /^Consul refused PUT http:\/\/127\.0\.0\.1:\d+\/v1\/session\/create: 403 .*\(no ACL token was given: set fleet\.token-file\)$/,
    );
  });
});

describe.skipIf(consulSkip != null)('ConsulClient sessions and locks', () => {
  let client: ConsulClient;
  beforeAll(() => {
    client = new ConsulClient({ address: plainConsul!.address });
  });

  it('takes, refuses and releases a lock by session, and renews and destroys sessions', async () => {
    const session = { ttlSeconds: 10, lockDelaySeconds: 1 };
    const a = await client.createSession({ name: 'a', ...session });
    const b = await client.createSession({ name: 'b', ...session });
    expect(a).toMatch(/^[0-9a-f-]{36}$/);
    expect(await client.acquire('locks/job', a, '{"server":"a"}')).toBe(true);
    expect(await client.acquire('locks/job', b, '{"server":"b"}')).toBe(false);
    const held = (await client.get('locks/job'))!;
    expect(held).toMatchObject({ session: a, lockIndex: 1 });
    expect(held.value!.toString()).toBe('{"server":"a"}');
    expect(held.createIndex).toBeGreaterThan(0);
    // A stale read answers from any server's state; on one agent it is the same.
    expect((await client.get('locks/job', { stale: true }))!.session).toBe(a);

    expect(await client.release('locks/job', a)).toBe(true);
    expect((await client.get('locks/job'))!.session).toBeNull();
    expect(await client.acquire('locks/job', b, '{"server":"b"}')).toBe(true);
    expect((await client.list('locks/', { stale: true })).entries).toMatchObject([
      { key: 'locks/job', session: b, lockIndex: 2 },
    ]);

    expect(await client.renewSession(a)).toBe(true);
    await client.destroySession(a);
    expect(await client.renewSession(a)).toBe(false);
    await client.destroySession(b);
    // Behavior "release": the dead session's lock is gone, the key and its history stay.
    expect((await client.get('locks/job'))!).toMatchObject({ session: null, lockIndex: 2 });
  });

  it("names the agent's leader", async () => {
    expect(await client.leader()).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('rejects a session answer that is not one', async () => {
    const { address, server } = await fakeServer((_req, res) => res.end('{"id": "lower case"}'));
    try {
      const error = await consulError(
        new ConsulClient({ address }).createSession({ name: 'x', ttlSeconds: 10, lockDelaySeconds: 1 }),
      );
      expect(error.kind).toBe('invalid-response');
      expect(error.message).toBe(
        `${address} answered PUT session/create with JSON that is not a session: "{\\"id\\": \\"lower case\\"}"`,
      );
    } finally {
      server.close();
    }
  });
});
