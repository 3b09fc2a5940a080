/**
 * The `qemu` source against one running QEMU (-machine none, a 32 MiB qcow2 disk): the point in time
 * while the "guest" overwrites the whole disk, incrementals from the rotated bitmaps, a missing and a
 * lying bitmap, a failed backup that leaves nothing behind, and the one-line errors.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Archive, Revision } from '@backy/core';
import { runBackup } from '@backy/core';
import { isBackyError } from '@backy/core/source';
import { captureLogger, MiB, restoreToBuffer, tempArchive, tempDir } from '@backy/core/testing';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planBitmap } from '../src/bitmaps.js';
import { processStart } from '../src/owner.js';
import { createQemuSource, type QemuSourceHooks } from '../src/qemu-source.js';
import { MIN_QEMU, olderThan, QmpClient } from '../src/qmp.js';
import { backyBitmaps, qemuSkip, startVm, type Vm } from './vm.js';

const skip = qemuSkip('source-qemu');
const suite = skip != null ? describe.skip : describe;
const SIZE = 32 * MiB;
const CHUNK = 4 * MiB;

describe('the QEMU version check', () => {
  it('compares versions part by part', () => {
    expect(olderThan({ major: 5, minor: 2, micro: 0 }, MIN_QEMU)).toBe(true);
    expect(olderThan({ major: 6, minor: 0, micro: 0 }, MIN_QEMU)).toBe(false);
    expect(olderThan({ major: 7, minor: 0, micro: 0 }, { major: 6, minor: 2, micro: 9 })).toBe(false);
    expect(olderThan({ major: 6, minor: 1, micro: 9 }, { major: 6, minor: 2, micro: 0 })).toBe(true);
  });
});

describe('which bitmap an incremental is read from', () => {
  const where = { qmp: '/run/vm.qmp', drive: 'drive0' };
  const parent = { qmp: '/run/vm.qmp', drive: 'drive0', bitmap: 'backy-m' };
  const b = (name: string, recording = true, more = {}) => ({
    name,
    recording,
    persistent: true,
    busy: false,
    inconsistent: false,
    ...more,
  });

  it('uses the recording bitmap the parent recorded', () => {
    expect(planBitmap(parent, where, [b('backy-m'), b('other')])).toEqual({ from: 'backy-m', revive: [] });
  });

  it('makes a full backup without a parent, from another drive, or without the bitmap', () => {
    expect(planBitmap(null, where, [b('backy-m')]).from).toBeNull();
    expect(planBitmap({ ...parent, drive: 'drive1' }, where, [b('backy-m')]).fullReason).toMatch(
      /not made from this QEMU drive/,
    );
    expect(planBitmap(parent, where, []).fullReason).toMatch(/backy-m the parent revision recorded is gone/);
    expect(planBitmap(parent, where, [b('backy-m', true, { inconsistent: true })]).fullReason).toMatch(
      /inconsistent/,
    );
  });

  it('merges the recording backy bitmaps into one a killed backup left disabled, and only those', () => {
    expect(planBitmap(parent, where, [b('backy-m', false), b('backy-n'), b('foreign')])).toEqual({
      from: 'backy-m',
      revive: ['backy-n'],
    });
    expect(planBitmap(parent, where, [b('backy-m', false), b('foreign')]).fullReason).toMatch(
      /disabled and no backy bitmap took over/,
    );
  });
});

suite('the qemu source against a running QEMU', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let vm: Vm;
  let archive: Archive;
  let cleanupArchive: () => Promise<void>;
  const options = () => ({
    qmp: vm.qmpPath,
    drive: 'drive0',
    'freeze-timeout': 10,
    'fleecing-dir': dir.path,
  });
  const backup = (hooks: QemuSourceHooks = {}, signal?: AbortSignal, logger = pino({ level: 'silent' })) =>
    runBackup(archive, createQemuSource(options(), hooks), { tags: ['test'], force: true, logger, signal });
  const pattern = (byte: number, length = SIZE) => Buffer.alloc(length, byte);

  /** Nothing of backy's is left in QEMU, one backy bitmap remains (the newest revision's), recording. */
  async function clean(rev: Revision) {
    expect(await vm.backyObjects()).toEqual([]);
    expect(await backyBitmaps(vm.qmp)).toEqual([
      expect.objectContaining({ name: `backy-${rev.uuid}`, recording: true }),
    ]);
    expect(rev.source_info).toMatchObject({ bitmap: `backy-${rev.uuid}`, drive: 'drive0' });
  }

  beforeAll(async () => {
    dir = await tempDir('backy-qemu-src-');
    vm = await startVm(dir.path, SIZE);
    ({ archive, cleanup: cleanupArchive } = await tempArchive({ source: { type: 'qemu' } }));
  });
  afterAll(async () => {
    await vm?.stop();
    await cleanupArchive?.();
    await dir?.cleanup();
  });

  it('backs up the disk as it was at the point in time while the guest overwrites all of it', async () => {
    await vm.fill(0, SIZE, 0xaa);
    const rev = await backup({
      // Right after the transaction, before anything is read: pattern B everywhere, through the
      // backup filter as the guest's writes go.
      onPointInTime: () => vm.fill(0, SIZE, 0xbb),
    });
    expect((await restoreToBuffer(archive, rev.uuid)).equals(pattern(0xaa))).toBe(true);
    expect((await vm.content()).equals(pattern(0xbb))).toBe(true);
    expect(rev.source_info).toMatchObject({
      mode: 'full',
      snapshot_method: 'direct',
      snapshot_direct_reason: 'no-agent',
    });
    expect(rev.verification).toMatchObject({ ok: true, method: 'full' });
    await clean(rev);
  });

  it('reads the dirty chunks of an incremental (and the sample) and restores byte for byte', async () => {
    // The guest's pattern B went to the bitmap added at the point in time: all of it is dirty now.
    const first = await backup();
    expect(first.source_info).toMatchObject({ mode: 'incremental' });
    expect(first.stats.bytes_read).toBe(SIZE);
    expect((await restoreToBuffer(archive, first.uuid)).equals(pattern(0xbb))).toBe(true);
    await vm.write(5 * MiB + 123, Buffer.from('written by the guest'));
    await vm.write(20 * MiB, Buffer.alloc(4096, 0x42));
    const rev = await backup({ sampleChunks: 1 });
    expect(rev.source_info).toMatchObject({ mode: 'incremental', from_bitmap: `backy-${first.uuid}` });
    // Two dirty chunks and one sampled, of eight.
    expect(rev.stats.bytes_read).toBeLessThanOrEqual(3 * CHUNK);
    expect(rev.stats.chunks_written).toBe(2);
    expect((await restoreToBuffer(archive, rev.uuid)).equals(await vm.content())).toBe(true);
    await clean(rev);
  });

  it('makes a full, correct backup when the bitmap is missing', async () => {
    const [bitmap] = await backyBitmaps(vm.qmp);
    await vm.qmp.execute('block-dirty-bitmap-remove', { node: 'drive0', name: bitmap!.name });
    await vm.fill(9 * MiB, MiB, 0x33);
    const log = captureLogger();
    const rev = await backup({}, undefined, log.logger);
    expect(rev.source_info).toMatchObject({ mode: 'full' });
    expect(log.lines.map((l) => l.msg).join('\n')).toMatch(/is gone .*: full backup/);
    expect((await restoreToBuffer(archive, rev.uuid)).equals(await vm.content())).toBe(true);
    await clean(rev);
  });

  it('makes a full, correct backup when the bitmap lies (the sample check)', async () => {
    const [bitmap] = await backyBitmaps(vm.qmp);
    await vm.fill(13 * MiB, MiB, 0x44);
    await vm.qmp.execute('block-dirty-bitmap-clear', { node: 'drive0', name: bitmap!.name });
    const rev = await backup();
    expect(rev.source_info).toMatchObject({ mode: 'full' });
    expect(rev.source_info?.sample_mismatches).toBeGreaterThan(0);
    expect((await restoreToBuffer(archive, rev.uuid)).equals(await vm.content())).toBe(true);
    await clean(rev);
  });

  it('leaves nothing in QEMU after a failed backup, and the parent bitmap still holds its writes', async () => {
    const before = await archive.revisions();
    const parent = before.at(-1)!;
    const controller = new AbortController();
    const error = await backup(
      {
        onPointInTime: async () => {
          await vm.fill(2 * MiB, 4096, 0x55);
          controller.abort();
        },
      },
      controller.signal,
    ).catch((e) => e);
    expect(isBackyError(error, 'ABORTED')).toBe(true);
    expect(await archive.revisions()).toHaveLength(before.length);
    await clean(parent);
    const rev = await backup({ sampleChunks: 0 });
    // The write made during the failed backup is in the incremental after it.
    expect(rev.source_info).toMatchObject({ mode: 'incremental', from_bitmap: `backy-${parent.uuid}` });
    expect(rev.stats.chunks_written).toBe(1);
    expect((await restoreToBuffer(archive, rev.uuid)).equals(await vm.content())).toBe(true);
    await clean(rev);
  });

  it('says in one line what is wrong: the socket, the drive, a QEMU command it lacks', async () => {
    const wrong = createQemuSource({ ...options(), qmp: `${dir.path}/nope.sock` });
    const noSocket = await runBackup(archive, wrong, {
      tags: ['t'],
      force: true,
      logger: pino({ level: 'silent' }),
    }).catch((e) => e);
    expect(noSocket.message).toBe(`QMP socket ${dir.path}/nope.sock: no such socket`);
    const noDrive = await runBackup(archive, createQemuSource({ ...options(), drive: 'vdz' }), {
      tags: ['t'],
      force: true,
      logger: pino({ level: 'silent' }),
    }).catch((e) => e);
    expect(noDrive.message).toMatch(
      /^drive vdz not found in the QEMU at .*qmp\.sock \(source\.drive; it has: .*drive0/,
    );
    const deep = `${dir.path}/${'d'.repeat(60)}/${'e'.repeat(40)}`;
    const tooDeep = await runBackup(archive, createQemuSource({ ...options(), 'fleecing-dir': deep }), {
      tags: ['t'],
      force: true,
      logger: pino({ level: 'silent' }),
    }).catch((e) => e);
    expect(tooDeep.message).toMatch(
      /^source\.fleecing-dir .* is too deep for the NBD socket backy puts there/,
    );
    const tooOld = (await vm.qmp.execute('block-export-add-v2').catch((e) => e)) as Error;
    expect(tooOld.message).toMatch(/^QEMU 7\.2\.\d+ at .* is too old: backy needs block-export-add-v2$/);
    expect(await vm.backyObjects()).toEqual([]);
  });

  it("refuses to start beside another backup job on the drive, backy's (alive) or another tool's", async () => {
    const image = `${dir.path}/other.qcow2`;
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, String(SIZE)]);
    await vm.qmp.execute('blockdev-add', {
      driver: 'qcow2',
      'node-name': 'other',
      file: { driver: 'file', filename: image },
      backing: 'drive0',
    });
    // A live backy process's job (the test runner's parent process stands in for it), then a foreign one.
    const ppid = process.ppid;
    const tag = `${ppid.toString(36)}-${processStart(ppid)!.toString(36)}-1`;
    for (const [job, expected] of [
      [
        `backy-job-${tag}`,
        `another backy backup (pid ${ppid}) is running on drive drive0: not starting a second one`,
      ],
      [
        'libvirt-backup',
        'block job libvirt-backup is already running on drive drive0 (another backup or a mirror): backy does not start a backup beside it',
      ],
    ] as const) {
      await vm.qmp.execute('blockdev-backup', {
        'job-id': job,
        device: 'drive0',
        target: 'other',
        sync: 'none',
      });
      const error = await backup().catch((e) => e);
      expect(isBackyError(error, 'LOCKED')).toBe(true);
      expect(error.message).toBe(expected);
      // Not removed as a leftover: its owner lives.
      expect((await vm.qmp.execute<{ device: string }[]>('query-block-jobs')).map((j) => j.device)).toEqual([
        job,
      ]);
      await vm.qmp.execute('block-job-cancel', { device: job, force: true });
      while ((await vm.qmp.execute<unknown[]>('query-block-jobs')).length > 0)
        await new Promise((r) => setTimeout(r, 20));
    }
    await vm.qmp.execute('blockdev-del', { 'node-name': 'other' });
    expect((await backup()).source_info).toMatchObject({ mode: 'incremental' });
  });

  it("removes nothing that is not provably a dead backy run's own", async () => {
    const image = `${dir.path}/foreign.qcow2`;
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, String(SIZE)]);
    const ppid = process.ppid;
    const live = `backy-fleece-${ppid.toString(36)}-${processStart(ppid)!.toString(36)}-7`;
    const names = [live, 'backy-fleece-not-ours', 'fleece'];
    for (const name of names)
      await vm.qmp.execute('blockdev-add', {
        driver: 'qcow2',
        'node-name': name,
        file: { driver: 'file', filename: image, locking: 'off' },
        'read-only': true,
      });
    await vm.qmp.execute('block-dirty-bitmap-add', {
      node: 'drive0',
      name: 'libvirt-checkpoint',
      persistent: true,
    });
    // Directories that look like a run's: of another QEMU, and one without its record.
    const other = `${dir.path}/backy-qemu-1-1-1`;
    const bare = `${dir.path}/backy-qemu-2-2-2`;
    await mkdir(other);
    await mkdir(bare);
    await writeFile(
      `${other}/owner.json`,
      JSON.stringify({
        qmp: '/elsewhere.qmp',
        owner: { pid: 1, started: 1, run: 1 },
        server: true,
        socket: '',
      }),
    );
    const rev = await backup();
    const nodes = (
      await vm.qmp.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true })
    ).map((n) => n['node-name']);
    expect(nodes).toEqual(expect.arrayContaining(names));
    expect((await backyBitmaps(vm.qmp)).map((b) => b.name)).toEqual([`backy-${rev.uuid}`]);
    const all = await vm.qmp.execute<{ 'node-name': string; 'dirty-bitmaps'?: { name: string }[] }[]>(
      'query-named-block-nodes',
      { flat: true },
    );
    expect(all.find((n) => n['node-name'] === 'drive0')?.['dirty-bitmaps']?.map((b) => b.name)).toContain(
      'libvirt-checkpoint',
    );
    expect(await readdir(other)).toEqual(['owner.json']);
    expect(await readdir(bare)).toEqual([]);
    for (const name of names) await vm.qmp.execute('blockdev-del', { 'node-name': name });
    await vm.qmp.execute('block-dirty-bitmap-remove', { node: 'drive0', name: 'libvirt-checkpoint' });
  });

  it('tells a socket that is not QMP from one that does not answer', async () => {
    for (const [greeting, expected] of [
      ['{"hello": 1}\n', /^QMP socket \S+not-qmp\.sock is not a QMP socket \(no QMP greeting\)$/],
      ['', /no QMP greeting within 0\.3 s \(is it a QMP socket\?\)$/],
    ] as const) {
      const path = `${dir.path}/not-qmp.sock`;
      const server = createServer((c) => {
        if (greeting !== '') c.write(greeting);
      });
      await new Promise<void>((r) => server.listen(path, r));
      try {
        const error = (await QmpClient.connect(path, { timeoutMs: 300 }).catch((e) => e)) as Error;
        expect(error.message).toMatch(expected);
      } finally {
        server.close();
        await rm(path, { force: true });
      }
    }
  });

  it('gives up on a QEMU that does not answer, naming the command', async () => {
    const client = await QmpClient.connect(vm.qmpPath);
    const pid = await vm.pid();
    process.kill(pid, 'SIGSTOP');
    try {
      const error = (await client
        .execute('query-status', undefined, { timeoutMs: 300 })
        .catch((e) => e)) as Error;
      expect(error.message).toBe(`QMP socket ${vm.qmpPath}: QEMU did not answer query-status within 0.3 s`);
    } finally {
      process.kill(pid, 'SIGCONT');
      client.close();
    }
  });

  it('connects to QMP and negotiates capabilities, with events', async () => {
    const client = await QmpClient.connect(`${dir.path}/qmp.sock`);
    try {
      expect(client.version.major).toBeGreaterThanOrEqual(6);
      const status = await client.execute<{ status: string }>('query-status');
      expect(typeof status.status).toBe('string');
    } finally {
      client.close();
    }
  });
});

suite('the qemu source with a guest device attached (q35, virtio-blk)', () => {
  it('backs up the point in time while the guest writes through its device', async () => {
    const dir = await tempDir('backy-qemu-dev-');
    const vm = await startVm(dir.path, 16 * MiB, { device: true });
    const { archive, cleanup } = await tempArchive({ source: { type: 'qemu' } });
    try {
      await vm.fill(0, 16 * MiB, 0xaa);
      const source = createQemuSource(
        { qmp: vm.qmpPath, drive: 'vd0', 'freeze-timeout': 10, 'fleecing-dir': dir.path },
        { onPointInTime: () => vm.fill(0, 16 * MiB, 0xbb) },
      );
      const rev = await runBackup(archive, source, {
        tags: ['t'],
        force: true,
        logger: pino({ level: 'silent' }),
      });
      expect((await restoreToBuffer(archive, rev.uuid)).equals(Buffer.alloc(16 * MiB, 0xaa))).toBe(true);
      expect((await vm.content()).equals(Buffer.alloc(16 * MiB, 0xbb))).toBe(true);
      expect(rev.source_info).toMatchObject({ drive: 'vd0', node: 'drive0' });
      expect(await vm.backyObjects()).toEqual([]);
    } finally {
      await cleanup();
      await vm.stop();
      await dir.cleanup();
    }
  });
});
