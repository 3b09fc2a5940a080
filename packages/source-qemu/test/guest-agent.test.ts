/**
 * The guest agent around the point in time, with Debian's qemu-ga running on the host as the "guest's"
 * agent. Safety: qemu-ga always runs with `-b guest-fsfreeze-freeze` (the host-wide freeze is disabled),
 * the source is configured with `freeze-mountpoints` of a loop-mounted test file system only, and the
 * test never writes to that file system.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runBackup } from '@backy/core';
import { MiB, tempArchive, tempDir } from '@backy/core/testing';
import { skipWithout } from '@backy/test-env';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsonLineSocket } from '../src/json-socket.js';
import { writeRunRecord } from '../src/leftovers.js';
import { ownerTag } from '../src/owner.js';
import { createQemuSource, type QemuSourceHooks } from '../src/qemu-source.js';
import type { QmpEvent } from '../src/qmp.js';
import { startVm, type Vm } from './vm.js';

const exec = promisify(execFile);
const label = 'source-qemu guest agent';
const skip =
  skipWithout(
    label,
    'qemu-system-x86_64',
    'qemu-img',
    'qemu-ga',
    'mkfs.ext4',
    'mount',
    'umount',
    'truncate',
    'sh',
  ) ?? (process.getuid?.() === 0 ? null : 'loop mounts need root');
if (skip != null && /root/.test(skip)) console.warn(`[${label}] skipped: ${skip}`);
const suite = skip != null ? describe.skip : describe;

/** One command on a fresh connection to the agent (the agent serves one client at a time). */
async function agentCommand(
  socket: string,
  execute: string,
  args?: Record<string, unknown>,
): Promise<unknown> {
  const conn = await JsonLineSocket.connect(socket, { what: 'qga' });
  try {
    return await new Promise((resolve, reject) => {
      conn.onMessage((m) =>
        m.error != null ? reject(new Error(JSON.stringify(m.error))) : resolve(m.return),
      );
      conn.send({ execute, ...(args != null ? { arguments: args } : {}) });
    });
  } finally {
    conn.close();
  }
}

suite('the guest agent freezes around the point in time', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let vm: Vm;
  let mnt: string;
  let qga: string;
  let mounted = false;
  let agent: ChildProcess | null = null;
  const events: QmpEvent[] = [];

  beforeAll(async () => {
    dir = await tempDir('backy-qemu-qga-');
    vm = await startVm(dir.path, 8 * MiB);
    vm.qmp.onEvent((e) => events.push(e));
    const image = join(dir.path, 'ext4.img');
    mnt = join(dir.path, 'mnt');
    await mkdir(mnt);
    await exec('truncate', ['-s', '64M', image]);
    await exec('mkfs.ext4', ['-q', image]);
    await exec('mount', ['-o', 'loop', image, mnt]);
    mounted = true;
    qga = join(dir.path, 'qga.sock');
    await startAgent();
  });

  /** qemu-ga (in the foreground, a child of this process), always with the host-wide freeze disabled; waits until it answers. */
  async function startAgent() {
    await rm(qga, { force: true });
    agent = spawn(
      'qemu-ga',
      [
        ...['-m', 'unix-listen', '-p', qga, '-t', dir.path, '-l', join(dir.path, 'qga.log')],
        '-b',
        'guest-fsfreeze-freeze',
      ],
      { stdio: 'ignore' },
    );
    for (let i = 0; i < 100 && (await agentCommand(qga, 'guest-ping').catch(() => null)) === null; i++)
      await new Promise((r) => setTimeout(r, 20));
  }

  afterAll(async () => {
    if (agent?.pid != null && agent.exitCode == null && agent.signalCode == null) {
      agent.kill('SIGCONT');
      // Whatever a failed test left: never leave the test file system frozen.
      await agentCommand(qga, 'guest-fsfreeze-thaw').catch(() => {});
      agent.kill('SIGKILL');
    }
    if (mounted) {
      await exec('fsfreeze', ['-u', mnt]).catch(() => {});
      await exec('umount', [mnt]);
    }
    await vm?.stop();
    await dir?.cleanup();
  });

  const backup = async (freezeTimeout: number, hooks: QemuSourceHooks = {}, freezeAll = false) => {
    const { archive, cleanup } = await tempArchive({ source: { type: 'qemu' } });
    try {
      const options = {
        qmp: vm.qmpPath,
        drive: 'drive0',
        'guest-agent': qga,
        ...(freezeAll ? {} : { 'freeze-mountpoints': [mnt] }),
        'freeze-timeout': freezeTimeout,
        'fleecing-dir': dir.path,
      };
      return await runBackup(archive, createQemuSource(options, hooks), {
        tags: ['t'],
        force: true,
        logger: pino({ level: 'silent' }),
      });
    } finally {
      await cleanup();
    }
  };

  it('freezes the configured mount point, takes the point in time, thaws: in that order', async () => {
    events.length = 0;
    let probe: ChildProcess | null = null;
    let probeDone = 0;
    const rev = await backup(10, {
      // Right before the transaction: a write to the test file system, in the background (a write to a
      // frozen file system blocks uninterruptibly), must not get through now.
      async beforePointInTime() {
        probe = spawn('sh', ['-c', `echo probe > ${mnt}/probe`], { stdio: 'ignore' });
        probe.once('exit', () => {
          probeDone = Date.now();
        });
        await new Promise((r) => setTimeout(r, 300));
        expect(probeDone, 'the file system is frozen at the point in time').toBe(0);
      },
    });
    expect(rev.source_info).toMatchObject({ snapshot_method: 'agent' });
    expect(await agentCommand(qga, 'guest-fsfreeze-status')).toBe('thawed');
    if (probeDone === 0) await new Promise((r) => probe!.once('exit', r));
    // The write got through once thawed, after QEMU created the point in time's block job.
    const created = events.find(
      (e) =>
        e.event === 'JOB_STATUS_CHANGE' &&
        e.data.status === 'created' &&
        String(e.data.id).startsWith('backy-job-'),
    );
    expect(created).toBeDefined();
    expect(created!.time).toBeLessThanOrEqual(probeDone);
    expect(await readFile(join(mnt, 'probe'), 'utf8')).toBe('probe\n');
  });

  it('marks the revision crash consistent when the agent hangs, and freezes nothing', async () => {
    const pid = agent!.pid!;
    process.kill(pid, 'SIGSTOP');
    let rev: Awaited<ReturnType<typeof backup>>;
    try {
      rev = await backup(1);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect(rev.source_info).toMatchObject({
      snapshot_method: 'direct',
      snapshot_direct_reason: 'agent-timeout',
    });
    expect(await agentCommand(qga, 'guest-fsfreeze-status')).toBe('thawed');
    expect(await vm.backyObjects()).toEqual([]);
  });

  it('thaws at the timeout when the point in time takes longer: crash consistent', async () => {
    let probeDone = 0;
    const rev = await backup(1, {
      async beforePointInTime() {
        const probe = spawn('sh', ['-c', `echo late > ${mnt}/late`], { stdio: 'ignore' });
        probe.once('exit', () => {
          probeDone = Date.now();
        });
        // Longer than freeze-timeout: the watchdog thaws, and the write gets through meanwhile.
        await new Promise((r) => setTimeout(r, 2500));
        expect(probeDone, 'thawed by the watchdog before the transaction').toBeGreaterThan(0);
      },
    });
    expect(rev.source_info).toMatchObject({
      snapshot_method: 'direct',
      snapshot_direct_reason: 'freeze-too-long',
    });
    expect(await agentCommand(qga, 'guest-fsfreeze-status')).toBe('thawed');
  });

  it('falls back to crash consistent when the agent refuses to freeze (here: freeze-all is disabled)', async () => {
    const rev = await backup(5, {}, true);
    expect(rev.source_info).toMatchObject({
      snapshot_method: 'direct',
      snapshot_direct_reason: 'freeze-failed',
    });
    expect(await agentCommand(qga, 'guest-fsfreeze-status')).toBe('thawed');
    expect(await vm.backyObjects()).toEqual([]);
  });

  it('fails the backup, saying so, when the thaw fails (the agent died while the guest was frozen)', async () => {
    const error = (await backup(5, {
      async beforePointInTime() {
        agent!.kill('SIGKILL');
      },
    }).catch((e) => e)) as Error;
    // The test thaws what the dead agent left frozen before anything else looks at the file system.
    await exec('fsfreeze', ['-u', mnt]).catch(() => {});
    await startAgent();
    // The new agent finds the dead one's state file and starts "frozen": its thaw resets that.
    await agentCommand(qga, 'guest-fsfreeze-thaw');
    expect(await agentCommand(qga, 'guest-fsfreeze-status')).toBe('thawed');
    expect(error.message).toMatch(
      /^guest file systems may still be frozen: guest agent .*; thaw them \(guest-fsfreeze-thaw\) now$/,
    );
    expect(await vm.backyObjects()).toEqual([]);
  });

  it('leaves a freeze that is not its own alone: crash consistent, still frozen', async () => {
    expect(await agentCommand(qga, 'guest-fsfreeze-freeze-list', { mountpoints: [mnt] })).toBe(1);
    try {
      const rev = await backup(5);
      expect(rev.source_info).toMatchObject({
        snapshot_method: 'direct',
        snapshot_direct_reason: 'already-frozen',
      });
      expect(await agentCommand(qga, 'guest-fsfreeze-status')).toBe('frozen');
    } finally {
      await agentCommand(qga, 'guest-fsfreeze-thaw');
    }
  });

  it('thaws the guest a killed backup left frozen (its run record says it froze), then backs up', async () => {
    // A dead process's pid: a child that has exited.
    const child = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => child.once('exit', r));
    const owner = { pid: child.pid!, started: 1, run: 1 };
    const runDir = join(dir.path, `backy-qemu-${ownerTag(owner)}`);
    await mkdir(runDir);
    await writeRunRecord(runDir, {
      qmp: vm.qmpPath,
      owner,
      server: false,
      socket: join(runDir, 'nbd.sock'),
      freezing: qga,
    });
    expect(await agentCommand(qga, 'guest-fsfreeze-freeze-list', { mountpoints: [mnt] })).toBe(1);
    const rev = await backup(5);
    expect(rev.source_info).toMatchObject({ snapshot_method: 'agent' });
    expect(await agentCommand(qga, 'guest-fsfreeze-status')).toBe('thawed');
    expect(await readdir(dir.path)).not.toContain(`backy-qemu-${ownerTag(owner)}`);
  });
});
