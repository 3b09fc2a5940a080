import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nbdkit, nbdToolsSkip, qemuImg, qemuIo, qemuNbd } from './nbd.js';

const skip = nbdToolsSkip('test-env');

describe.skipIf(skip != null)('the NBD servers of the tests', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'backy-test-env-nbd-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('qemu-nbd serves the image qemu-io wrote as export vm, until stopped', async () => {
    const image = join(dir, 'disk.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', image, '1M');
    await qemuIo(image, 'write -q -P 0x61 4096 4096');
    const server = await qemuNbd(image, 'qcow2', ['--read-only']);
    try {
      expect(server.url()).toBe(`nbd+unix:///vm?socket=${server.socket}`);
      await qemuImg('convert', '-f', 'raw', '-O', 'raw', server.url(), join(dir, 'copy.raw'));
    } finally {
      await server.stop();
    }
    const copy = await readFile(join(dir, 'copy.raw'));
    expect(copy.length).toBe(1024 * 1024);
    expect(copy.subarray(4096, 8192).equals(Buffer.alloc(4096, 0x61))).toBe(true);
    expect(copy.subarray(0, 4096).equals(Buffer.alloc(4096))).toBe(true);
    expect(existsSync(server.socket)).toBe(false);
  });

  it('nbdkit serves its plugin, and a failed start says why', async () => {
    const server = await nbdkit('memory', 'size=2M');
    try {
      expect(await qemuImg('info', '--output=json', server.url())).toMatch(/"virtual-size": 2097152/);
    } finally {
      await server.stop();
    }
    await expect(nbdkit('no-such-plugin-4711')).rejects.toThrow(
      /nbdkit did not start: .*no-such-plugin-4711/,
    );
  });
});
