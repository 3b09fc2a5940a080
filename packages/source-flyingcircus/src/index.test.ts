import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archive, type Revision, runBackup } from '@backy/core';
import { captureLogger, duplicateKeys, MiB, restoreToBuffer, vmLikeData } from '@backy/core/testing';
import { TEST_POOL } from '@backy/test-env/ceph';
import { consulHttp, createToken } from '@backy/test-env/consul';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  aclConsul as aclAgent,
  backendSkip,
  ceph as cephCluster,
  consul as plainAgent,
} from '../test/env.js';
import type { ProvidedConsul } from '../test/global-setup.js';
import { HostAgent } from '../test/host-agent.js';
import flyingcircus, { createFlyingcircusSource, parseFlyingcircusInitArgument } from './index.js';
import { flyingcircusSourceOptions } from './options.js';

describe('configuration', () => {
  it('parses `backy init flyingcircus POOL/IMAGE,VM[,TOKEN]`', () => {
    expect(parseFlyingcircusInitArgument('rbd.ssd/test01.root,test01')).toEqual({
      pool: 'rbd.ssd',
      image: 'test01.root',
      vm: 'test01',
    });
    expect(parseFlyingcircusInitArgument(' rbd/test01.root , test01 , s3cr3t ')).toEqual({
      pool: 'rbd',
      image: 'test01.root',
      vm: 'test01',
      consul_acl_token: 's3cr3t',
    });
    expect(flyingcircus.parseInitArgument).toBe(parseFlyingcircusInitArgument);
    for (const bad of ['rbd/test01.root', 'rbd/test01.root,', 'rbd/a,b,c,d', 'noslash,test01', ',test01']) {
      expect(() => parseFlyingcircusInitArgument(bad), bad).toThrow(/POOL\/IMAGE|expected/);
    }
  });

  it('validates options with defaults for the Consul address and the snapshot timeout', () => {
    const options = flyingcircusSourceOptions.parse(parseFlyingcircusInitArgument('rbd/test01.root,test01'));
    expect(options).toMatchObject({
      pool: 'rbd',
      image: 'test01.root',
      vm: 'test01',
      consul_address: 'http://127.0.0.1:8500',
      snapshot_timeout: 90,
    });
    expect(options.consul_acl_token).toBeUndefined();
    const custom = flyingcircusSourceOptions.parse({
      pool: 'rbd',
      image: 'x',
      vm: 'x',
      consul_address: 'consul.local:8500',
      snapshot_timeout: '2m',
      'full-always': true,
    });
    expect(custom).toMatchObject({
      consul_address: 'http://consul.local:8500',
      snapshot_timeout: 120,
      'full-always': true,
    });
    expect(
      flyingcircusSourceOptions.safeParse({ pool: 'rbd', image: 'x', vm: 'x', consul_address: 'ftp://x' })
        .success,
    ).toBe(false);
    expect(
      flyingcircusSourceOptions.safeParse({ pool: 'rbd', image: 'x', vm: 'x', snapshot_timeout: 'soon' })
        .success,
    ).toBe(false);
    expect(flyingcircusSourceOptions.safeParse({ pool: 'rbd', image: 'x' }).success).toBe(false); // vm missing
    expect(
      flyingcircusSourceOptions.safeParse({ pool: 'rbd', image: 'x', vm: 'x', consul: 'typo' }).success,
    ).toBe(false);
    expect(flyingcircus.type).toBe('flyingcircus');
    expect(flyingcircus.describe?.(options)).toBe('rbd/test01.root (VM test01)');
  });
});

describe.skipIf(backendSkip != null)(
  'flyingcircus source (real Ceph, real Consul, host-agent stand-in)',
  () => {
    const ceph = cephCluster!;
    const consul = plainAgent!;
    const aclConsul = aclAgent!;
    let agent: HostAgent;
    let dir: string;
    let archive: Archive;
    let deadConsul: string;
    const vm = 'src-test01';
    const pool = TEST_POOL;
    const image = 'src-test01.root';
    const history: { rev: Revision; content: Buffer }[] = [];

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'backy-fc-'));
      await ceph.importImage(image, vmLikeData(32 * MiB));
      agent = new HostAgent({
        consulAddress: consul.address,
        vms: { [vm]: `${pool}/${image}` },
        cephConf: ceph.conf,
      }).start();
      await agent.ready;
      archive = await Archive.init(join(dir, 'archive'), {
        source: { type: 'flyingcircus', pool, image, vm, conf: ceph.conf, consul_address: consul.address },
      });
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      deadConsul = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
      await new Promise((resolve) => closed.close(resolve));
    });
    afterAll(async () => {
      await agent?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    async function backup(overrides: Record<string, unknown> = {}) {
      const log = captureLogger();
      const options = flyingcircusSourceOptions.parse({
        pool,
        image,
        vm,
        conf: ceph.conf,
        consul_address: consul.address,
        snapshot_timeout: 20,
        ...overrides,
      });
      const source = createFlyingcircusSource(
        options,
        { logger: log.logger },
        { pollMs: { first: 100, max: 500 } },
      );
      const rev = await runBackup(archive, source, { tags: ['daily'], force: true, logger: log.logger });
      // Older snapshots are removed after the backup has returned.
      await source.settled();
      // Warnings of the handshake (its log lines carry `vm`); the RBD source's own are its tests' business.
      const handshakeWarnings = () => log.warnings().filter((l) => l.vm === vm);
      return { rev, log, handshakeWarnings };
    }

    // The reader (and the store's shared lock it holds) is closed after.
    const restore = (rev: Revision): Promise<Buffer> => restoreToBuffer(archive, rev.uuid);

    async function requestKeys(c: ProvidedConsul): Promise<string[]> {
      const r = await consulHttp(c, 'GET', '/v1/kv/snapshot/?keys', { token: c.token });
      return r.status === 404 ? [] : (r.json() as string[]);
    }

    it('full backup: the host agent makes the snapshot; the revision restores byte for byte', async () => {
      // A request left by a crashed earlier run of this VM; the agent acts on it, backy removes it.
      await consulHttp(consul, 'PUT', '/v1/kv/snapshot/0badc0de-0000-4000-8000-000000000000', {
        body: JSON.stringify({ vm, snapshot: 'backy-CRASHEDRUN' }),
      });
      // As the real agent would, the stand-in acts on it.
      await agent.waitFor((e) => e.type === 'created' && e.snapshot === 'backy-CRASHEDRUN');
      const { rev, handshakeWarnings, log } = await backup();
      const snapshot = `backy-${rev.uuid}`;
      // The handshake's lines add `vm` to the backup's bindings; `snapshot` they have once.
      expect(log.raw.flatMap(duplicateKeys)).toEqual([]);
      expect(log.lines.some((l) => l.vm === vm && l.snapshot === snapshot)).toBe(true);
      expect(rev.parent).toBeNull();
      expect(rev.trust).toBe('trusted');
      expect(rev.verification?.ok).toBe(true);
      expect(rev.source_info).toMatchObject({ snapshot, snapshot_method: 'agent' });
      await agent.waitFor((e) => e.type === 'created' && e.snapshot === snapshot);
      expect(handshakeWarnings()).toEqual([]);
      expect(await requestKeys(consul)).toEqual([]);

      const content = await ceph.exportImage(`${image}@${snapshot}`);
      expect(content.length).toBe(32 * MiB);
      expect((await restore(rev)).equals(content)).toBe(true);
      // Only the newest revision's snapshot is kept (the stale request's snapshot is cleaned up too).
      expect(await ceph.snapshotNames(image)).toEqual([snapshot]);
      history.push({ rev, content });
    });

    it('incremental backup after writes: only changed chunks, both revisions restore byte for byte', async () => {
      await ceph.writeImage(image, 5 * MiB + 123, Buffer.from('written between the backups'));
      await ceph.writeImage(image, 21 * MiB, randomBytes(64 * 1024));
      const { rev } = await backup();
      const snapshot = `backy-${rev.uuid}`;
      expect(rev.parent).toBe(history[0]!.rev.uuid);
      expect(rev.source_info).toMatchObject({ snapshot, snapshot_method: 'agent' });
      expect(rev.stats.chunks_written).toBeGreaterThan(0);
      expect(rev.stats.chunks_written).toBeLessThanOrEqual(2);
      expect(rev.stats.bytes_read).toBeLessThan(16 * MiB);

      const content = await ceph.exportImage(`${image}@${snapshot}`);
      expect(content.equals(history[0]!.content)).toBe(false);
      expect((await restore(rev)).equals(content)).toBe(true);
      expect((await restore(history[0]!.rev)).equals(history[0]!.content)).toBe(true);
      expect(await ceph.snapshotNames(image)).toEqual([snapshot]);
      expect(await requestKeys(consul)).toEqual([]);
      history.push({ rev, content });
    });

    it('without an agent for the VM: waits the timeout, snapshots directly, warns, and stays incremental', async () => {
      await agent.stop();
      await ceph.writeImage(image, 30 * MiB, randomBytes(4096));
      const started = Date.now();
      const { rev, handshakeWarnings } = await backup({ snapshot_timeout: 1.5 });
      expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
      expect(rev.source_info).toMatchObject({ snapshot_method: 'direct', snapshot_direct_reason: 'timeout' });
      expect(rev.parent).toBe(history[1]!.rev.uuid);
      expect(rev.stats.chunks_written).toBeLessThanOrEqual(1);
      expect(handshakeWarnings().map((l) => l.msg)).toEqual([
        'the host agent did not create the snapshot in time (VM offline or on no host, agent down?)',
        'created the snapshot directly: it is crash consistent only (guest file systems were not frozen)',
      ]);
      expect(await requestKeys(consul)).toEqual([]);
      const content = await ceph.exportImage(`${image}@backy-${rev.uuid}`);
      expect((await restore(rev)).equals(content)).toBe(true);
      history.push({ rev, content });
    });

    it('with Consul down: snapshots directly at once', async () => {
      const started = Date.now();
      const { rev, handshakeWarnings } = await backup({ consul_address: deadConsul });
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(rev.source_info).toMatchObject({
        snapshot_method: 'direct',
        snapshot_direct_reason: 'consul-unreachable',
      });
      expect(handshakeWarnings()[0]?.err).toMatch(/unreachable \(ECONNREFUSED\)/);
      expect((await restore(rev)).equals(await ceph.exportImage(`${image}@backy-${rev.uuid}`))).toBe(true);
    });

    it('with ACLs: a wrong token means a direct snapshot and a clear warning; the right one a frozen snapshot', async () => {
      agent = new HostAgent({
        consulAddress: aclConsul.address,
        token: aclConsul.token,
        vms: { [vm]: `${pool}/${image}` },
        cephConf: ceph.conf,
      }).start();
      await agent.ready;
      const wrong = await backup({
        consul_address: aclConsul.address,
        consul_acl_token: 'c0ffee00-0000-4000-8000-000000000000',
      });
      expect(wrong.rev.source_info).toMatchObject({
        snapshot_method: 'direct',
        snapshot_direct_reason: 'consul-forbidden',
      });
      expect(wrong.handshakeWarnings()[0]?.err).toMatch(/403 ACL not found/);

      const token = await createToken(aclConsul, 'backy', 'key_prefix "snapshot/" { policy = "write" }');
      await ceph.writeImage(image, 0, randomBytes(4096));
      const right = await backup({ consul_address: aclConsul.address, consul_acl_token: token });
      expect(right.rev.source_info).toMatchObject({ snapshot_method: 'agent' });
      expect(right.rev.parent).toBe(wrong.rev.uuid);
      expect(right.handshakeWarnings()).toEqual([]);
      expect(await requestKeys(aclConsul)).toEqual([]);
      expect(
        (await restore(right.rev)).equals(await ceph.exportImage(`${image}@backy-${right.rev.uuid}`)),
      ).toBe(true);
      // All revisions made so far still restore to what their snapshots held.
      for (const { rev, content } of history) expect((await restore(rev)).equals(content)).toBe(true);
    });

    it('checkInit warns about an unreachable Consul', async () => {
      const options = flyingcircusSourceOptions.parse({
        pool,
        image,
        vm,
        conf: ceph.conf,
        consul_address: deadConsul,
      });
      const warnings = await flyingcircus.checkInit!(options);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/unreachable.*fall back to snapshots without freezing/);
      const fine = flyingcircusSourceOptions.parse({
        pool,
        image,
        vm,
        conf: ceph.conf,
        consul_address: consul.address,
      });
      expect(await flyingcircus.checkInit!(fine)).toEqual([]);
    });
  },
);
