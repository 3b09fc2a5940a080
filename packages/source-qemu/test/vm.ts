/**
 * A "running VM" for the tests: `qemu-system-x86_64 -machine none` holding a qcow2 disk (node `drive0`)
 * with a QMP socket, started daemonized in a private directory. The human monitor's `qemu-io` writes
 * into the live disk as a guest would.
 */
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { skipWithout } from '@backy/test-env';
import { QmpClient } from '../src/qmp.js';

const exec = promisify(execFile);

/** Why the QEMU tests skip (printed), or null. */
export const qemuSkip = (label: string) =>
  skipWithout(label, 'qemu-system-x86_64', 'qemu-img', 'qemu-io', 'nbdinfo');

export interface Vm {
  dir: string;
  qmpPath: string;
  disk: string;
  /** A QMP connection of the test's own. */
  qmp: QmpClient;
  hmp(command: string): Promise<string>;
  /** Writes `data` at `offset` through `node` (default: the top of drive0, a backup filter if any). */
  write(offset: number, data: Buffer, node?: string): Promise<void>;
  /** Fills [offset, offset+length) with `pattern` through the top of drive0. */
  fill(offset: number, length: number, pattern: number): Promise<void>;
  /** The node guest writes must go through now: drive0, or the backup filter on top of it. */
  top(): Promise<string>;
  size(): Promise<number>;
  resize(size: number): Promise<void>;
  /** The disk's content as the guest sees it. */
  content(): Promise<Buffer>;
  /** Block nodes, jobs and exports whose names start with `backy-`, and backy bitmaps. */
  backyObjects(): Promise<string[]>;
  stop(): Promise<void>;
  /** The QEMU process's id. */
  pid(): Promise<number>;
}

/**
 * `device`: a q35 machine (TCG) with the disk attached to a virtio-blk device `vd0`, whose writes then
 * go through the device's backend as a guest's do.
 */
export async function startVm(
  dir: string,
  initial: Buffer | number,
  options: { device?: boolean } = {},
): Promise<Vm> {
  const disk = join(dir, 'disk.qcow2');
  const qmpPath = join(dir, 'qmp.sock');
  // QEMU serves one client per QMP socket: backy gets qmp.sock, the test its own.
  const testQmp = join(dir, 'qmp-test.sock');
  const pidFile = join(dir, 'qemu.pid');
  const size = typeof initial === 'number' ? initial : initial.length;
  await exec('qemu-img', ['create', '-q', '-f', 'qcow2', disk, String(size)]);
  await exec('qemu-system-x86_64', [
    ...(options.device
      ? ['-M', 'q35', '-accel', 'tcg', '-m', '128', '-device', 'virtio-blk-pci,drive=drive0,id=vd0']
      : ['-machine', 'none']),
    ...['-nodefaults', '-display', 'none', '-daemonize', '-pidfile', pidFile],
    ...['-blockdev', `driver=file,filename=${disk},node-name=file0`],
    ...['-blockdev', 'driver=qcow2,file=file0,node-name=drive0'],
    ...['-qmp', `unix:${qmpPath},server=on,wait=off`],
    ...['-qmp', `unix:${testQmp},server=on,wait=off`],
  ]);
  const qmp = await QmpClient.connect(testQmp);
  const hmp = async (command: string) => {
    const out = await qmp.execute<string>('human-monitor-command', { 'command-line': command });
    if (out.trim() !== '') throw new Error(`HMP ${command}: ${out.trim()}`);
    return out;
  };
  const staging = join(dir, 'staging.bin');
  const top = async () => {
    if (options.device) return '-d vd0/virtio-backend';
    const nodes = await qmp.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true });
    return nodes.find((n) => n['node-name'].startsWith('backy-filter-'))?.['node-name'] ?? 'drive0';
  };
  const vm: Vm = {
    dir,
    qmpPath,
    disk,
    qmp,
    hmp,
    top,
    async write(offset, data, node) {
      await writeFile(staging, data);
      await hmp(`qemu-io ${node ?? (await top())} "write -q -s ${staging} ${offset} ${data.length}"`);
    },
    async fill(offset, length, pattern) {
      await hmp(`qemu-io ${await top()} "write -q -P ${pattern} ${offset} ${length}"`);
    },
    async size() {
      const nodes = await qmp.execute<{ 'node-name': string; image: { 'virtual-size': number } }[]>(
        'query-named-block-nodes',
        { flat: true },
      );
      return nodes.find((n) => n['node-name'] === 'drive0')!.image['virtual-size'];
    },
    async resize(bytes) {
      if (options.device) throw new Error('resize: not with a device');
      await qmp.execute('block_resize', { 'node-name': 'drive0', size: bytes });
    },
    async content() {
      await hmp(`qemu-io ${await top()} "flush"`);
      const raw = join(dir, 'content.raw');
      await exec('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', disk, raw]);
      const data = await readFile(raw);
      await rm(raw);
      return data;
    },
    async backyObjects() {
      const nodes = await qmp.execute<{ 'node-name': string; 'dirty-bitmaps'?: { name: string }[] }[]>(
        'query-named-block-nodes',
        { flat: true },
      );
      const jobs = await qmp.execute<{ device: string }[]>('query-block-jobs');
      const exports = await qmp.execute<{ id: string }[]>('query-block-exports');
      return [
        ...nodes.map((n) => n['node-name']).filter((n) => n.startsWith('backy-')),
        ...jobs.map((j) => `job ${j.device}`),
        ...exports.map((e) => `export ${e.id}`),
      ];
    },
    pid: async () => Number(await readFile(pidFile, 'utf8')),
    async stop() {
      await qmp.execute('quit').catch(() => {});
      qmp.close();
      for (let i = 0; i < 100; i++) {
        const alive = await readFile(pidFile, 'utf8').then(
          () => true,
          () => false,
        );
        if (!alive) break;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
  if (typeof initial !== 'number') {
    // qemu-io's -s reads the whole source file: write in pieces of at most 16 MiB.
    for (let offset = 0; offset < initial.length; offset += 16 * 1024 * 1024)
      await vm.write(
        offset,
        initial.subarray(offset, Math.min(initial.length, offset + 16 * 1024 * 1024)),
        'drive0',
      );
  }
  return vm;
}

/** The backy bitmaps of drive0. */
export async function backyBitmaps(qmp: QmpClient): Promise<{ name: string; recording: boolean }[]> {
  const nodes = await qmp.execute<
    { 'node-name': string; 'dirty-bitmaps'?: { name: string; recording: boolean }[] }[]
  >('query-named-block-nodes', { flat: true });
  const drive = nodes.find((n) => n['node-name'] === 'drive0');
  return (drive?.['dirty-bitmaps'] ?? []).filter((b) => b.name.startsWith('backy-'));
}
