import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isBackyError } from '@backy/core/source';
import { MiB, tempDir } from '@backy/core/testing';
import { nbdkit, nbdToolsSkip, qemuImg, qemuIo, qemuNbd, type Server } from '@backy/test-env/nbd';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseNbdUrl } from '../src/address.js';
import { NbdClient } from '../src/client.js';

const skipReason = nbdToolsSkip('source-nbd');

const suite = skipReason != null ? describe.skip : describe;
const unix = (server: Server, exportName = '') => parseNbdUrl(server.url(exportName));
const message = (promise: Promise<unknown>) =>
  promise.then(
    () => 'no error',
    (e: Error) => e.message,
  );

describe('parseNbdUrl', () => {
  it('reads the NBD URI forms', () => {
    expect(parseNbdUrl('nbd://example.org/disk')).toEqual({
      transport: 'tcp',
      host: 'example.org',
      port: 10809,
      exportName: 'disk',
    });
    expect(parseNbdUrl('nbd://[::1]:1234/a%20b')).toEqual({
      transport: 'tcp',
      host: '::1',
      port: 1234,
      exportName: 'a b',
    });
    expect(parseNbdUrl('nbd+unix:///vm?socket=/run/x.sock')).toEqual({
      transport: 'unix',
      socket: '/run/x.sock',
      exportName: 'vm',
    });
    expect(parseNbdUrl('nbd+unix:///?socket=/s').exportName).toBe('');
  });

  it('rejects what it cannot connect to with one line each', () => {
    for (const [url, why] of [
      ['http://x/y', /scheme must be nbd: or nbd\+unix:/],
      ['nbds://x/y', /TLS/],
      ['nbd+unix:///vm', /names no socket/],
      ['not a url', /is not a URL/],
    ] as const) {
      expect(() => parseNbdUrl(url)).toThrow(why);
    }
  });
});

suite('NbdClient against nbdkit', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let data: Buffer;
  let file: Server;
  let sparse: Server;

  beforeAll(async () => {
    dir = await tempDir();
    data = randomBytes(8 * MiB + 1000);
    await writeFile(join(dir.path, 'disk.raw'), data);
    file = await nbdkit('file', join(dir.path, 'disk.raw'));
    // 8 MiB, data only at 1 MiB (3 bytes) and 4 MiB (64 KiB of 0x55): the rest is sparse.
    sparse = await nbdkit('data', 'data=@1048576 1 2 3 @4194304 (0x55)*65536', 'size=8M');
  });
  afterAll(async () => {
    await file?.stop();
    await sparse?.stop();
    await dir?.cleanup();
  });

  it('negotiates the export and its size', async () => {
    const client = await NbdClient.connect(unix(file));
    expect(client.size).toBe(data.length);
    await client.close();
  });

  it('reads many requests in flight, each landing in its own buffer', async () => {
    const client = await NbdClient.connect(unix(file));
    const size = 256 * 1024;
    const offsets = Array.from({ length: 32 }, (_, i) => (i * 7919 * 4096) % (data.length - size));
    const results = await Promise.all(offsets.map((o) => client.read(o, size)));
    results.forEach((r, i) => {
      expect(r.data.equals(data.subarray(offsets[i]!, offsets[i]! + size))).toBe(true);
      expect(r.dataBytes).toBe(size);
    });
    // The short tail of the export, and a read larger than one request is split.
    const tail = await client.read(8 * MiB, 1000);
    expect(tail.data.equals(data.subarray(8 * MiB))).toBe(true);
    await client.close();
  });

  it('reports base:allocation extents: data where it was written, hole and zero elsewhere', async () => {
    const client = await NbdClient.connect(unix(sparse), { metaContexts: ['base:allocation'] });
    expect(client.contextId('base:allocation')).not.toBeNull();
    const extents = await client.extents('base:allocation', 0, client.size);
    expect(extents.reduce((n, e) => n + e.length, 0)).toBe(8 * MiB);
    const at = (offset: number) => extents.find((e) => e.offset <= offset && offset < e.offset + e.length)!;
    expect(at(0).flags & 2, 'zero at 0').toBe(2);
    expect(at(1048576).flags & 2, 'data at 1 MiB').toBe(0);
    expect(at(2 * MiB).flags & 2, 'zero at 2 MiB').toBe(2);
    expect(at(4 * MiB + 100).flags & 2, 'data at 4 MiB').toBe(0);
    expect(at(7 * MiB).flags & 2).toBe(2);
    const read = await client.read(1048576, 4);
    expect([...read.data]).toEqual([1, 2, 3, 0]);
    await client.close();
  });

  it('fails with one line when the server lacks structured replies', async () => {
    const old = await nbdkit('--no-sr', 'memory', 'size=1M');
    try {
      expect(await message(NbdClient.connect(unix(old)))).toMatch(/does not support structured replies/);
    } finally {
      await old.stop();
    }
  });

  it('retries a failing read and then fails it cleanly, naming the offset', async () => {
    const failing = await nbdkit('--filter=error', 'memory', 'size=1M', 'error-pread-rate=100%');
    try {
      const client = await NbdClient.connect(unix(failing));
      const error = await client.read(4096, 4096).catch((e) => e);
      expect(isBackyError(error, 'SOURCE_FAILED')).toBe(true);
      expect(error.message).toMatch(/read of 4096 bytes at offset 4096 failed \(EIO\)/);
      await client.close();
    } finally {
      await failing.stop();
    }
  });

  it('says what is wrong when the server is not there', async () => {
    expect(
      await message(NbdClient.connect(parseNbdUrl(`nbd+unix:///?socket=${join(dir.path, 'no-such.sock')}`))),
    ).toMatch(/no such socket/);
    expect(await message(NbdClient.connect(parseNbdUrl('nbd://127.0.0.1:1/x')))).toMatch(
      /nbd:\/\/127\.0\.0\.1:1\/x: connection refused/,
    );
  });
});

suite('NbdClient against qemu-nbd', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let server: Server;

  beforeAll(async () => {
    dir = await tempDir();
    const image = join(dir.path, 'disk.qcow2');
    await qemuImg('create', '-q', '-f', 'qcow2', image, '16M');
    await qemuIo(image, 'write -P 0x22 1M 64k');
    await qemuImg('bitmap', '--add', image, 'b0');
    await qemuIo(image, 'write -P 0x33 8M 128k');
    server = await qemuNbd(image, 'qcow2', ['--read-only', '--bitmap=b0']);
  });
  afterAll(async () => {
    await server?.stop();
    await dir?.cleanup();
  });

  it('reports exactly the ranges written since the bitmap was added as dirty', async () => {
    const client = await NbdClient.connect(unix(server, 'vm'), {
      metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b0'],
    });
    const dirty = (await client.extents('qemu:dirty-bitmap:b0', 0, client.size)).filter((e) => e.flags & 1);
    expect(dirty).toEqual([{ offset: 8 * MiB, length: 128 * 1024, flags: 1 }]);
    const data = (await client.extents('base:allocation', 0, client.size)).filter((e) => (e.flags & 2) === 0);
    expect(data.map((e) => e.offset)).toEqual([1 * MiB, 8 * MiB]);
    await client.close();
  });

  it('reads holes without moving their bytes', async () => {
    const client = await NbdClient.connect(unix(server, 'vm'));
    const hole = await client.read(2 * MiB, MiB, Buffer.alloc(MiB, 0xff));
    expect(hole.dataBytes).toBe(0);
    expect(hole.data.equals(Buffer.alloc(MiB))).toBe(true);
    const mixed = await client.read(8 * MiB - 4096, 8192);
    expect(mixed.data.subarray(0, 4096).equals(Buffer.alloc(4096))).toBe(true);
    expect(mixed.data.subarray(4096).equals(Buffer.alloc(4096, 0x33))).toBe(true);
    await client.close();
  });

  it('names a missing export or bitmap', async () => {
    expect(await message(NbdClient.connect(unix(server, 'nope')))).toMatch(/has no export "nope"/);
    const client = await NbdClient.connect(unix(server, 'vm'), { metaContexts: ['qemu:dirty-bitmap:other'] });
    expect(client.contextId('qemu:dirty-bitmap:other')).toBeNull();
    await client.close();
  });
});
