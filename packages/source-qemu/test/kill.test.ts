/**
 * kill -9 of the real `backy backup` process while it backs up a running QEMU: once the point in time
 * is taken (its block job is there), and while it reads the export. The next `backy backup` removes
 * what the killed one left (nodes, job, export, NBD server, fleecing directory), merges the bitmap it
 * left disabled, and makes a correct incremental that holds the writes made before and after the kill.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Archive } from '@backy/core';
import { MiB, restoreToBuffer, tempDir, vmLikeData } from '@backy/core/testing';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backyBitmaps, qemuSkip, startVm, type Vm } from './vm.js';

const skip = skipWithoutCli('source-qemu', qemuSkip('source-qemu kill -9'));
const suite = skip != null ? describe.skip : describe;

function backy(...args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((done) =>
    execFile(process.execPath, [BACKY_BIN, ...args], (error, _stdout, stderr) =>
      done({ code: error == null ? 0 : typeof error.code === 'number' ? error.code : 1, stderr }),
    ),
  );
}

suite('kill -9 of backy during a backup of a running QEMU', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let vm: Vm;
  const archivePath = () => join(dir.path, 'archive');
  const fleecing = () => join(dir.path, 'fleecing');
  const runDirs = async () =>
    (await readdir(fleecing()).catch(() => [])).filter((n) => n.startsWith('backy-'));

  beforeAll(async () => {
    dir = await tempDir('backy-qemu-kill-');
    vm = await startVm(dir.path, vmLikeData(48 * MiB));
    const init = await backy(
      '-b',
      archivePath(),
      'init',
      'qemu',
      '-o',
      `qmp=${vm.qmpPath}`,
      '-o',
      'drive=drive0',
      '-o',
      `fleecing-dir=${fleecing()}`,
    );
    expect(init.stderr).toBe('');
    const first = await backy('-b', archivePath(), 'backup', '-f', 'first');
    expect(first.code, first.stderr).toBe(0);
  });
  afterAll(async () => {
    await vm?.stop();
    await dir?.cleanup();
  });

  /** Starts `backy backup` and kills it with SIGKILL as soon as `ready` sees the state to kill it in. */
  async function killWhen(ready: (objects: string[]) => boolean): Promise<string[]> {
    const child: ChildProcess = spawn(
      process.execPath,
      [BACKY_BIN, '-b', archivePath(), 'backup', '-f', 'killed'],
      {
        stdio: 'ignore',
      },
    );
    const exited = new Promise((r) => child.once('exit', r));
    try {
      for (let i = 0; i < 2000; i++) {
        const objects = await vm.backyObjects();
        if (ready(objects)) {
          child.kill('SIGKILL');
          await exited;
          return objects;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      throw new Error('the backup never reached the state to kill it in');
    } finally {
      child.kill('SIGKILL');
    }
  }

  for (const [when, ready] of [
    [
      'right after the point in time (its block job runs)',
      (o: string[]) => o.some((x) => x.startsWith('job backy-job-')),
    ],
    ['while it reads the export', (o: string[]) => o.some((x) => x.startsWith('export backy-export-'))],
  ] as const) {
    it(`leaves nothing behind after the next backup when killed ${when}, which is correct`, async () => {
      await vm.fill(3 * MiB, 64 * 1024, 0x61);
      const seen = await killWhen(ready);
      // The kill came mid-way: backy's nodes and job were there, and stay until the next run.
      expect(seen.length).toBeGreaterThan(0);
      expect(await vm.backyObjects()).not.toEqual([]);
      // Written after the kill: recorded only by the bitmap the killed backup added.
      await vm.fill(30 * MiB, 64 * 1024, 0x62);
      const next = await backy('-b', archivePath(), 'backup', '-f', 'next');
      expect(next.code, next.stderr).toBe(0);
      expect(await vm.backyObjects()).toEqual([]);
      expect(await runDirs()).toEqual([]);
      const archive = await Archive.open(archivePath());
      const rev = (await archive.revisions()).at(-1)!;
      expect(rev.tags).toEqual(['next']);
      expect(rev.source_info).toMatchObject({ mode: 'incremental' });
      expect((await restoreToBuffer(archive, rev.uuid)).equals(await vm.content())).toBe(true);
      expect(await backyBitmaps(vm.qmp)).toEqual([
        expect.objectContaining({ name: `backy-${rev.uuid}`, recording: true }),
      ]);
    });
  }
});
