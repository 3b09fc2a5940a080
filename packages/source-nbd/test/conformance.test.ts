/**
 * The conformance suite from @backy/core/testing: the `nbd` source against nbdkit (file plugin) and
 * qemu-nbd (a raw file), and the `qcow2` source (its own qemu-nbd, bitmaps rotated every backup).
 */
import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir, testSource } from '@backy/core/testing';
import { nbdkitAt, nbdToolsSkip, qemuImg, qemuIo, qemuNbd, type Server } from '@backy/test-env/nbd';
import nbdSource from '../src/index.js';
import qcow2Source from '../src/qcow2.js';

const skipReason = nbdToolsSkip('source-nbd');

/** A raw file behind an NBD server; `restart` when the server reads the size only once. */
async function rawFixture(
  initial: Buffer,
  start: (filename: string, socket: string) => Promise<Server>,
  restart: boolean,
) {
  const dir = await tempDir();
  const filename = join(dir.path, 'disk.raw');
  const socket = join(dir.path, 'nbd.sock');
  await writeFile(filename, initial);
  let server = await start(filename, socket);
  return {
    options: { url: server.url() },
    async write(offset: number, data: Buffer) {
      const handle = await open(filename, 'r+');
      await handle.write(data, 0, data.length, offset);
      await handle.close();
    },
    async resize(size: number) {
      await truncate(filename, size);
      if (!restart) return;
      await server.stop();
      server = await start(filename, socket);
    },
    content: () => readFile(filename),
    cleanup: async () => {
      await server.stop();
      await dir.cleanup();
    },
  };
}

testSource({
  definition: nbdSource,
  name: 'nbd (nbdkit file plugin)',
  skip: skipReason,
  makeFixture: (initial) =>
    rawFixture(initial, (filename, socket) => nbdkitAt(socket, 'file', filename), false),
});

testSource({
  definition: nbdSource,
  name: 'nbd (qemu-nbd, raw)',
  skip: skipReason,
  // qemu's block layer counts in 512-byte sectors.
  sizeUnit: 512,
  makeFixture: (initial) =>
    rawFixture(initial, (filename, socket) => qemuNbd(filename, 'raw', [], socket), true),
});

testSource({
  definition: qcow2Source,
  name: 'qcow2 (qemu-nbd, dirty bitmaps)',
  skip: skipReason,
  sizeUnit: 512,
  async makeFixture(initial) {
    const dir = await tempDir();
    const filename = join(dir.path, 'disk.qcow2');
    const staging = join(dir.path, 'write.bin');
    const raw = join(dir.path, 'content.raw');
    // Written through QEMU, as a VM would: the bitmaps see every write.
    const write = async (offset: number, data: Buffer) => {
      await writeFile(staging, data);
      await qemuIo(filename, `write -q -s ${staging} ${offset} ${data.length}`);
    };
    await qemuImg('create', '-q', '-f', 'qcow2', filename, String(initial.length));
    await write(0, initial);
    return {
      options: { filename },
      write,
      async resize(size) {
        await qemuImg('resize', '-q', '-f', 'qcow2', '--shrink', filename, String(size));
      },
      async content() {
        await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', filename, raw);
        return readFile(raw);
      },
      cleanup: () => dir.cleanup(),
    };
  },
});
