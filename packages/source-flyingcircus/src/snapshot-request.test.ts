/**
 * The handshake against a real Consul agent, a real Ceph cluster and the host-agent stand-in. The Ceph side
 * of the code under test (exists / direct snapshot) is the `rbd` CLI here; the source tests run it through
 * @backy/source-ceph-rbd.
 */
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { captureLogger } from '@backy/core/testing';
import { consulHttp, createToken, startConsul } from '@backy/test-env/consul';
import { afterEach, describe, expect, it } from 'vitest';
import {
  aclConsul as aclAgent,
  backendSkip,
  ceph as cephCluster,
  consul as plainAgent,
} from '../test/env.js';
import type { ProvidedConsul } from '../test/global-setup.js';
import { HostAgent } from '../test/host-agent.js';
import { ConsulKv } from './consul.js';
import { requestConsistentSnapshot, type SnapshotRequestOptions } from './snapshot-request.js';

const run = promisify(execFile);
describe.skipIf(backendSkip != null)(
  'snapshot handshake (real Consul, real Ceph, host-agent stand-in)',
  () => {
    const ceph = cephCluster!;
    const consul = plainAgent!;
    const aclConsul = aclAgent!;
    const agents: HostAgent[] = [];
    let imageCounter = 0;
    afterEach(async () => {
      await Promise.all(agents.splice(0).map((agent) => agent.stop()));
      // Every test leaves snapshot/ as it found it (empty), or it fails below.
      for (const c of [consul, aclConsul]) {
        await consulHttp(c, 'DELETE', '/v1/kv/snapshot/?recurse', { token: c.token });
      }
    });

    /** A fresh image for a fresh VM name. */
    async function newVm(): Promise<{ vm: string; pool: string; image: string }> {
      const n = ++imageCounter;
      const image = `hs-vm${n}.root`;
      await ceph.createImage(image, 4 * 1024 * 1024);
      return { vm: `hs-vm${n}`, pool: ceph.pool, image };
    }

    function startAgent(c: ProvidedConsul, vms: Record<string, string>, freezeMs = 0): HostAgent {
      const agent = new HostAgent({
        consulAddress: c.address,
        token: c.token,
        vms,
        cephConf: ceph.conf,
        freezeMs,
      }).start();
      agents.push(agent);
      return agent;
    }

    function handshake(
      target: { vm: string; pool: string; image: string },
      overrides: Partial<SnapshotRequestOptions> & { snapshot: string },
    ) {
      const log = captureLogger();
      const spec = `${target.pool}/${target.image}@${overrides.snapshot}`;
      let directCalls = 0;
      const promise = requestConsistentSnapshot({
        consul: new ConsulKv({ address: consul.address }),
        vm: target.vm,
        timeoutMs: 10_000,
        logger: log.logger,
        pollMs: { first: 100, max: 500 },
        exists: async () => (await ceph.snapshotNames(target.image)).includes(overrides.snapshot),
        createDirect: async () => {
          directCalls++;
          await run('rbd', ['--conf', ceph.conf, 'snap', 'create', spec]);
        },
        ...overrides,
      });
      return { promise, log, directCalls: () => directCalls };
    }

    async function requestKeys(c: ProvidedConsul): Promise<string[]> {
      const r = await consulHttp(c, 'GET', '/v1/kv/snapshot/?keys', { token: c.token });
      return r.status === 404 ? [] : (r.json() as string[]);
    }

    it('the host agent makes the snapshot; the request is exactly {vm, snapshot} and is deleted afterwards', async () => {
      const target = await newVm();
      const agent = startAgent(consul, { [target.vm]: `${target.pool}/${target.image}` });
      await agent.ready;
      const h = handshake(target, { snapshot: 'backy-AAAA' });
      const outcome = await h.promise;

      expect(outcome.method).toBe('agent');
      expect(outcome.reason).toBeUndefined();
      expect(h.directCalls()).toBe(0);
      // The agent's blocking query woke up on the PUT (its wait is 5 s): the snapshot came well before that.
      expect(agent.watchRounds).toBeGreaterThanOrEqual(2);
      expect(outcome.elapsedMs).toBeLessThan(2500);
      const event = await agent.waitFor((e) => e.type === 'created');
      expect(agent.events.filter((e) => e.type === 'created')).toHaveLength(1);
      expect(event.key).toBe(outcome.requestKey);
      expect(event.key).toMatch(
        /^snapshot\/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
      expect(JSON.parse((event as { raw: string }).raw)).toEqual({ vm: target.vm, snapshot: 'backy-AAAA' });
      expect(await ceph.snapshotNames(target.image)).toEqual(['backy-AAAA']);
      expect(await requestKeys(consul)).toEqual([]);
      expect(h.log.warnings()).toEqual([]);
    });

    it('waits for a slow agent that makes it within the timeout', async () => {
      const target = await newVm();
      const agent = startAgent(consul, { [target.vm]: `${target.pool}/${target.image}` }, 2500);
      await agent.ready;
      const h = handshake(target, { snapshot: 'backy-SLOW', timeoutMs: 8000 });
      const outcome = await h.promise;

      expect(outcome.method).toBe('agent');
      expect(outcome.elapsedMs).toBeGreaterThanOrEqual(2500);
      expect(outcome.elapsedMs).toBeLessThan(8000);
      expect(h.directCalls()).toBe(0);
      await agent.waitFor((e) => e.type === 'created' && e.snapshot === 'backy-SLOW');
      expect(agent.events.filter((e) => e.type === 'created')).toHaveLength(1);
      expect(await requestKeys(consul)).toEqual([]);
    });

    it('falls back to a direct snapshot with a warning when no agent answers (VM offline / on another host)', async () => {
      const target = await newVm();
      // An agent is running, but on a host where this VM is not.
      const other = startAgent(consul, { elsewhere00: 'rbd/nonexistent' });
      await other.ready;
      const h = handshake(target, { snapshot: 'backy-NOAGENT', timeoutMs: 1500 });
      const outcome = await h.promise;

      expect(outcome).toMatchObject({ method: 'direct', reason: 'timeout' });
      expect(outcome.elapsedMs).toBeGreaterThanOrEqual(1500);
      expect(outcome.elapsedMs).toBeLessThan(6000);
      expect(h.directCalls()).toBe(1);
      expect(await ceph.snapshotNames(target.image)).toEqual(['backy-NOAGENT']);
      expect(await requestKeys(consul)).toEqual([]);
      await other.waitFor((e) => e.type === 'ignored' && e.reason === 'VM not on this host');
      const messages = h.log.warnings().map((l) => l.msg);
      expect(messages).toContain(
        'the host agent did not create the snapshot in time (VM offline or on no host, agent down?)',
      );
      expect(messages).toContain(
        'created the snapshot directly: it is crash consistent only (guest file systems were not frozen)',
      );
    });

    it('copes with an agent that finishes just as backy gives up', async () => {
      const target = await newVm();
      const agent = startAgent(consul, { [target.vm]: `${target.pool}/${target.image}` }, 1500);
      await agent.ready;
      // The agent is busy freezing; the direct snapshot races with it. Either way one snapshot results.
      const h = handshake(target, {
        snapshot: 'backy-RACE',
        timeoutMs: 1000,
        createDirect: async (signal) => {
          // The agent wins the race: its snapshot lands between backy giving up and the direct attempt.
          await agent.waitFor((e) => e.type === 'created' && e.snapshot === 'backy-RACE');
          await run(
            'rbd',
            ['--conf', ceph.conf, 'snap', 'create', `${target.pool}/${target.image}@backy-RACE`],
            { signal },
          );
        },
      });
      const outcome = await h.promise;
      expect(outcome.method).toBe('agent');
      expect(await ceph.snapshotNames(target.image)).toEqual(['backy-RACE']);
      expect(await requestKeys(consul)).toEqual([]);
      expect(h.log.lines.map((l) => l.msg)).toContain(
        'the host agent created the snapshot after all, just as backy tried to create it directly',
      );
    });

    it('withdraws the request when the backup is aborted while waiting', async () => {
      const target = await newVm();
      const controller = new AbortController();
      const h = handshake(target, {
        snapshot: 'backy-ABORTED',
        timeoutMs: 30_000,
        signal: controller.signal,
      });
      // Wait until the request is in Consul, then abort.
      for (let i = 0; i < 100 && (await requestKeys(consul)).length === 0; i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(await requestKeys(consul)).toHaveLength(1);
      const started = Date.now();
      controller.abort(new Error('backup aborted by the operator'));
      await expect(h.promise).rejects.toThrow(/aborted/);
      expect(Date.now() - started).toBeLessThan(3000);
      expect(await requestKeys(consul)).toEqual([]);
      expect(h.directCalls()).toBe(0);
      expect(await ceph.snapshotNames(target.image)).toEqual([]);
    });

    it('snapshots directly at once when Consul is down', async () => {
      const target = await newVm();
      const down = createServer();
      await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
      const address = `http://127.0.0.1:${(down.address() as AddressInfo).port}`;
      await new Promise((resolve) => down.close(resolve));

      const h = handshake(target, {
        snapshot: 'backy-DOWN',
        consul: new ConsulKv({ address }),
        timeoutMs: 30_000,
      });
      const started = Date.now();
      const outcome = await h.promise;
      expect(outcome).toMatchObject({ method: 'direct', reason: 'consul-unreachable' });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(await ceph.snapshotNames(target.image)).toEqual(['backy-DOWN']);
      const warning = h.log
        .warnings()
        .find((l) => String(l.msg).startsWith('cannot request a consistent snapshot'));
      expect(warning?.err).toMatch(/Consul at http:\/\/127\.0\.0\.1:\d+ is unreachable \(ECONNREFUSED\)/);
    });

    it('treats a non-Consul answer on the port as Consul trouble: a clear warning and a direct snapshot', async () => {
      const target = await newVm();
      const impostor = createServer((_req, res) => {
        res.setHeader('content-type', 'text/html');
        res.end('<html><body><h1>502 Bad Gateway</h1></body></html>');
      });
      await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
      try {
        const address = `http://127.0.0.1:${(impostor.address() as AddressInfo).port}`;
        const h = handshake(target, { snapshot: 'backy-IMPOSTOR', consul: new ConsulKv({ address }) });
        expect(await h.promise).toMatchObject({ method: 'direct', reason: 'consul-error' });
        const warning = h.log
          .warnings()
          .find((l) => String(l.msg).startsWith('cannot request a consistent snapshot'));
        expect(warning?.err).toMatch(/not JSON: ".*502 Bad Gateway/);
        expect(await ceph.snapshotNames(target.image)).toEqual(['backy-IMPOSTOR']);
      } finally {
        impostor.close();
      }
    });

    it('survives Consul going away while it waits: direct snapshot after the timeout, no hang', async () => {
      const target = await newVm();
      const own = await startConsul();
      let stopped = false;
      try {
        const h = handshake(target, {
          snapshot: 'backy-GONE',
          consul: new ConsulKv({ address: own.address }),
          timeoutMs: 2000,
          exists: async () => {
            // Consul stops after the request was written, while backy polls Ceph.
            if (!stopped) {
              stopped = true;
              await own.stop();
            }
            return (await ceph.snapshotNames(target.image)).includes('backy-GONE');
          },
        });
        const started = Date.now();
        const outcome = await h.promise;
        expect(outcome).toMatchObject({ method: 'direct', reason: 'timeout' });
        expect(Date.now() - started).toBeLessThan(8000);
        expect(await ceph.snapshotNames(target.image)).toEqual(['backy-GONE']);
        const messages = h.log.warnings().map((l) => l.msg);
        expect(messages).toContain(
          'could not delete the snapshot request; the next backup of this VM removes it',
        );
      } finally {
        if (!stopped) await own.stop();
      }
    });

    it('does not hang beyond the timeout on a Consul that accepts connections and never answers', async () => {
      const target = await newVm();
      const stuck = createServer(() => {});
      await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
      try {
        const address = `http://127.0.0.1:${(stuck.address() as AddressInfo).port}`;
        const h = handshake(target, {
          snapshot: 'backy-STUCK',
          consul: new ConsulKv({ address }),
          timeoutMs: 2000,
        });
        const outcome = await h.promise;
        expect(outcome).toMatchObject({ method: 'direct', reason: 'consul-timeout' });
        expect(outcome.elapsedMs).toBeLessThan(5000);
        expect(await ceph.snapshotNames(target.image)).toEqual(['backy-STUCK']);
      } finally {
        stuck.closeAllConnections();
        stuck.close();
      }
    });

    it('with ACLs: a wrong token is reported clearly and the snapshot is made directly; the right token works', async () => {
      const target = await newVm();
      const agent = startAgent(aclConsul, { [target.vm]: `${target.pool}/${target.image}` });
      await agent.ready;

      const wrong = handshake(target, {
        snapshot: 'backy-WRONGTOKEN',
        consul: new ConsulKv({ address: aclConsul.address, token: '6f1d3c4e-0000-4000-8000-000000000000' }),
      });
      const started = Date.now();
      expect(await wrong.promise).toMatchObject({ method: 'direct', reason: 'consul-forbidden' });
      expect(Date.now() - started).toBeLessThan(5000);
      const warning = wrong.log
        .warnings()
        .find((l) => String(l.msg).startsWith('cannot request a consistent snapshot'));
      expect(warning?.err).toMatch(/403 ACL not found .*consul_acl_token/);

      const token = await createToken(aclConsul, 'backy', 'key_prefix "snapshot/" { policy = "write" }');
      const right = handshake(target, {
        snapshot: 'backy-RIGHTTOKEN',
        consul: new ConsulKv({ address: aclConsul.address, token }),
      });
      expect(await right.promise).toMatchObject({ method: 'agent' });
      expect((await ceph.snapshotNames(target.image)).sort()).toEqual([
        'backy-RIGHTTOKEN',
        'backy-WRONGTOKEN',
      ]);
      expect(await requestKeys(aclConsul)).toEqual([]);
    });

    it("removes this VM's stale backy requests, keeps everyone else's, and logs garbage without touching it", async () => {
      const target = await newVm();
      const put = (key: string, body: string) => consulHttp(consul, 'PUT', `/v1/kv/${key}`, { body });
      await put(
        'snapshot/11111111-dead-4bad-8bad-000000000001',
        JSON.stringify({ vm: target.vm, snapshot: 'backy-CRASHED1' }),
      );
      await put(
        'snapshot/11111111-dead-4bad-8bad-000000000002',
        JSON.stringify({ vm: target.vm, snapshot: 'backy-CRASHED2' }),
      );
      await put(
        'snapshot/22222222-0000-4000-8000-000000000003',
        JSON.stringify({ vm: target.vm, snapshot: 'manual-keep' }),
      );
      await put(
        'snapshot/33333333-0000-4000-8000-000000000004',
        JSON.stringify({ vm: 'othervm', snapshot: 'backy-OTHER' }),
      );
      await put('snapshot/44444444-0000-4000-8000-000000000005', 'this is not json {');
      await put('snapshot/44444444-0000-4000-8000-000000000006', JSON.stringify({ vm: 42 }));

      const agent = startAgent(consul, { [target.vm]: `${target.pool}/${target.image}` });
      await agent.ready;
      const h = handshake(target, { snapshot: 'backy-FRESH' });
      expect(await h.promise).toMatchObject({ method: 'agent' });

      expect((await requestKeys(consul)).sort()).toEqual([
        'snapshot/22222222-0000-4000-8000-000000000003',
        'snapshot/33333333-0000-4000-8000-000000000004',
        'snapshot/44444444-0000-4000-8000-000000000005',
        'snapshot/44444444-0000-4000-8000-000000000006',
      ]);
      const removed = h.log.lines
        .filter((l) => l.msg === 'removed a stale snapshot request of this VM')
        .map((l) => l.stale_snapshot);
      expect(removed.sort()).toEqual(['backy-CRASHED1', 'backy-CRASHED2']);
      const garbage = h.log
        .warnings()
        .filter((l) => l.msg === 'ignoring a value under snapshot/ that is not a snapshot request');
      expect(garbage.map((l) => l.key).sort()).toEqual([
        'snapshot/44444444-0000-4000-8000-000000000005',
        'snapshot/44444444-0000-4000-8000-000000000006',
      ]);
      // The stand-in, like the real agent, ignored the garbage and acted on the stale requests it saw.
      await agent.waitFor((e) => e.type === 'ignored' && e.reason === 'not a request');
      // Leave snapshot/ empty for the next test.
      await consulHttp(consul, 'DELETE', '/v1/kv/snapshot/?recurse');
    });
  },
);
