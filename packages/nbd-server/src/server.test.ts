import { createHash, randomInt } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Archive, type Revision, restoreToPath } from '@backy/core';
import { captureLogger, MiB } from '@backy/core/testing';
import {
  BASE_ALLOCATION,
  CMD,
  CMD_FLAG,
  encodeInfoRequest,
  encodeMetaContextRequest,
  INFO,
  NBD_ERR,
  OPT,
  REP,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  STATE_HOLE,
  STATE_ZERO,
  TF,
} from '@backy/nbd-protocol';
import { missingTools, SYSTEM_PATH_ENV } from '@backy/test-env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveExports } from './exports.js';
import { NbdServer } from './server.js';
import { errorOf, TestClient } from './test-client.js';
import {
  backupImage,
  CHUNK,
  makeArchive,
  pseudoRandom,
  run,
  vmLikeImage,
  writeImage,
} from './test-helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
let archive: Archive;
let rev1: Revision;
let rev2: Revision;
let image1: Buffer;
let image2: Buffer;
let server: NbdServer;
let port: number;
const logs = captureLogger();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backy-nbd-test-'));
  archive = await makeArchive(join(dir, 'archive'));
  image1 = vmLikeImage(1);
  image2 = vmLikeImage(2);
  await writeImage(join(dir, 'vm1.img'), image1);
  await writeImage(join(dir, 'vm2.img'), image2);
  rev1 = await backupImage(archive, join(dir, 'vm1.img'), ['daily']);
  rev2 = await backupImage(archive, join(dir, 'vm2.img'), ['weekly']);
  server = new NbdServer({ exports: archiveExports(archive), logger: logs.logger });
  port = (await server.listen(0, '127.0.0.1')).port;
});

afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const uri = (name: string, p = port) => `nbd://127.0.0.1:${p}/${name}`;

/** Skips with a printed reason (the tool and its Debian package) when a client program is missing. */
function needs(ctx: { skip: (note?: string) => void }, ...programs: string[]): void {
  const reason = missingTools(...programs);
  if (reason != null) {
    console.warn(`skipped: ${reason}`);
    ctx.skip(reason);
  }
}

async function waitFor(condition: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('NBD server with real clients', () => {
  it('restoreToPath reproduces the images (the reference for the clients)', async () => {
    for (const [rev, img] of [
      [rev1, image1],
      [rev2, image2],
    ] as const) {
      const out = join(dir, `restored-${rev.uuid}.raw`);
      const reader = await archive.openReader(rev);
      await restoreToPath(reader, out).finally(() => reader.close());
      expect(sha(await readFile(out))).toBe(sha(img));
    }
  });

  it('qemu-img convert copies revisions byte-identical to backy restore', async (ctx) => {
    needs(ctx, 'qemu-img');
    for (const [name, rev] of [
      ['last', rev2],
      [rev1.uuid, rev1],
      ['daily', rev1],
      ['1', rev1],
      [rev2.uuid.slice(0, 8), rev2],
    ] as const) {
      const out = join(dir, `qemu-${name}.raw`);
      const r = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(name), out]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const restored = await readFile(join(dir, `restored-${rev.uuid}.raw`));
      const copied = await readFile(out);
      expect(copied.length).toBe(restored.length);
      expect(sha(copied)).toBe(sha(restored));
    }
  });

  it('nbdcopy copies a revision byte-identical to backy restore, and leaves zero chunks sparse', async (ctx) => {
    needs(ctx, 'nbdcopy');
    const out = join(dir, 'nbdcopy.raw');
    const r = await run('nbdcopy', [uri(rev2.uuid), out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(sha(await readFile(out))).toBe(sha(await readFile(join(dir, `restored-${rev2.uuid}.raw`))));
    // rev1 has two zero chunks: block status lets nbdcopy skip them, so the copy stays sparse.
    const out1 = join(dir, 'nbdcopy1.raw');
    expect((await run('nbdcopy', [uri(rev1.uuid), out1])).code).toBe(0);
    expect(sha(await readFile(out1))).toBe(sha(image1));
    const st = await stat(out1);
    expect(st.blocks * 512).toBeLessThanOrEqual(image1.length - 2 * CHUNK + MiB);
  });

  it('nbdinfo shows size, read-only flag, the export list with tags, and zero chunks as holes', async (ctx) => {
    needs(ctx, 'nbdinfo');
    const info = await run('nbdinfo', ['--json', uri('last')]);
    expect(info.code).toBe(0);
    const json = JSON.parse(info.stdout) as { exports: Record<string, unknown>[] };
    const e = json.exports[0]!;
    expect(e['export-size']).toBe(image2.length);
    expect(e.is_read_only).toBe(true);
    expect(e.can_multi_conn).toBe(true);
    expect(e.can_zero).toBe(false);
    expect(e.can_df).toBe(true);
    expect(e.contexts).toContain('base:allocation');
    expect(e.block_size_maximum).toBe(32 * MiB);

    const list = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${port}`]);
    expect(list.code).toBe(0);
    const listed = JSON.parse(list.stdout) as { exports: { 'export-name': string; description?: string }[] };
    const names = listed.exports.map((x) => x['export-name']);
    expect(names).toEqual([rev2.uuid, rev1.uuid]);
    expect(listed.exports[0]!.description).toContain('tags: weekly');
    expect(listed.exports[1]!.description).toContain('tags: daily');

    const map = await run('nbdinfo', ['--map', '--json', uri(rev1.uuid)]);
    expect(map.code).toBe(0);
    const extents = JSON.parse(map.stdout) as { offset: number; length: number; type: number }[];
    const holes = extents.filter((x) => x.type !== 0);
    expect(holes).toEqual([
      expect.objectContaining({ offset: CHUNK, length: CHUNK, type: STATE_HOLE | STATE_ZERO }),
      expect.objectContaining({ offset: 4 * CHUNK, length: CHUNK, type: STATE_HOLE | STATE_ZERO }),
    ]);
    expect(extents.reduce((n, x) => n + x.length, 0)).toBe(image1.length);
  });

  it('serves partial reads at random offsets (nbdsh)', async (ctx) => {
    needs(ctx, 'nbdsh');
    const ranges: [number, number][] = [
      [0, 1],
      [CHUNK - 7, 20],
      [image2.length - 1536, 1536],
      [image2.length - 1, 1],
      [CHUNK / 2, 3 * CHUNK],
    ];
    for (let i = 0; i < 40; i++) {
      const length = randomInt(1, 2 * MiB);
      ranges.push([randomInt(0, image2.length - length), length]);
    }
    const script = [
      'import hashlib',
      `for off, n in ${JSON.stringify(ranges)}:`,
      '    print(hashlib.sha256(h.pread(n, off)).hexdigest())',
    ].join('\n');
    const r = await run('nbdsh', ['-u', uri('weekly'), '-c', script], { env: SYSTEM_PATH_ENV });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(ranges.map(([off, n]) => sha(image2.subarray(off, off + n))));
  });

  it('serves several clients at once', async (ctx) => {
    needs(ctx, 'qemu-img');
    needs(ctx, 'nbdcopy');
    const jobs = [
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri('last'), join(dir, 'c1.raw')]),
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri('daily'), join(dir, 'c2.raw')]),
      run('nbdcopy', [uri('weekly'), join(dir, 'c3.raw')]),
      run('nbdcopy', ['--connections=4', uri(rev1.uuid), join(dir, 'c4.raw')]),
    ];
    const results = await Promise.all(jobs);
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    expect(sha(await readFile(join(dir, 'c1.raw')))).toBe(sha(image2));
    expect(sha(await readFile(join(dir, 'c2.raw')))).toBe(sha(image1));
    expect(sha(await readFile(join(dir, 'c3.raw')))).toBe(sha(image2));
    expect(sha(await readFile(join(dir, 'c4.raw')))).toBe(sha(image1));
    await waitFor(() => server.connectionCount === 0);
  });

  it('refuses unknown export names with a message and keeps serving', async (ctx) => {
    needs(ctx, 'nbdinfo');
    const r = await run('nbdinfo', [uri('no-such-revision')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no-such-revision/);
    const q = await run('qemu-img', ['info', uri('all')]);
    expect(q.code).not.toBe(0);
    expect(q.stderr).toMatch(/matches 2 revisions/);
    expect((await run('nbdinfo', ['--size', uri('last')])).stdout.trim()).toBe(String(image2.length));
  });
});

describe('NBD protocol details (raw client)', () => {
  it('answers NBD_OPT_GO for a bad name with NBD_REP_ERR_UNKNOWN and lets the client try again', async () => {
    const c = await TestClient.connect(port);
    try {
      const bad = await c.option(OPT.GO, encodeInfoRequest({ name: 'bogus', requests: [] }));
      expect(bad.at(-1)!.type).toBe(REP.ERR_UNKNOWN);
      expect(bad.at(-1)!.data.toString()).toMatch(/bogus/);
      const info = await c.option(
        OPT.INFO,
        encodeInfoRequest({ name: '', requests: [INFO.NAME, INFO.DESCRIPTION, INFO.BLOCK_SIZE] }),
      );
      expect(info.at(-1)!.type).toBe(REP.ACK);
      const name = info.find((r) => r.type === REP.INFO && r.data.readUInt16BE(0) === INFO.NAME)!;
      expect(name.data.subarray(2).toString()).toBe(rev2.uuid);
      const ok = await c.go('last', { structured: true });
      expect(ok.at(-1)!.type).toBe(REP.ACK);
      expect(c.size).toBe(image2.length);
      expect(c.transmissionFlags & TF.READ_ONLY).toBeTruthy();
      expect(sha(await c.read(CHUNK - 100, 200))).toBe(sha(image2.subarray(CHUNK - 100, CHUNK + 100)));
    } finally {
      c.close();
    }
  });

  it('drops a client that asks for an unknown name with NBD_OPT_EXPORT_NAME (it cannot be told)', async () => {
    const c = await TestClient.connect(port);
    c.sendOption(OPT.EXPORT_NAME, Buffer.from('bogus'));
    await expect(c.reader.read(1)).rejects.toThrow(/closed/);
  });

  it('rejects unknown and malformed options without dropping the client', async () => {
    const c = await TestClient.connect(port);
    try {
      expect((await c.option(99)).at(-1)!.type).toBe(REP.ERR_UNSUP);
      expect((await c.option(OPT.LIST, Buffer.from('x'))).at(-1)!.type).toBe(REP.ERR_INVALID);
      expect((await c.option(OPT.GO, Buffer.from([0, 0, 0, 9, 1]))).at(-1)!.type).toBe(REP.ERR_INVALID);
      expect((await c.option(OPT.STARTTLS)).at(-1)!.type).toBe(REP.ERR_POLICY);
      // Meta contexts need structured replies first.
      const allocation = encodeMetaContextRequest({ name: 'last', queries: [BASE_ALLOCATION] });
      expect((await c.option(OPT.SET_META_CONTEXT, allocation)).at(-1)!.type).toBe(REP.ERR_INVALID);
      expect((await c.option(OPT.ABORT)).at(-1)!.type).toBe(REP.ACK);
    } finally {
      c.close();
    }
  });

  it('refuses oversized and out-of-range requests with EINVAL/EOVERFLOW and writes with EPERM', async () => {
    const c = await TestClient.connect(port);
    try {
      await c.go('last', { structured: true });
      c.request(CMD.READ, 0, 64 * MiB);
      let chunks = await c.readStructured();
      expect(chunks).toHaveLength(1);
      expect(chunks[0]!.type).toBe(REPLY_TYPE.ERROR);
      expect(errorOf(chunks[0]!)).toBe(NBD_ERR.EINVAL);
      c.request(CMD.READ, 0, 33 * MiB, CMD_FLAG.DF);
      chunks = await c.readStructured();
      expect(errorOf(chunks[0]!)).toBe(NBD_ERR.EOVERFLOW);
      c.request(CMD.READ, image2.length - 10, 20);
      expect(errorOf((await c.readStructured())[0]!)).toBe(NBD_ERR.EINVAL);
      c.request(CMD.WRITE, 0, 4096, 0, Buffer.alloc(4096, 1));
      const w = await c.readReply();
      expect(w.simple ? w.error : errorOf(w)).toBe(NBD_ERR.EPERM);
      c.request(CMD.BLOCK_STATUS, 0, 4096);
      expect(errorOf((await c.readStructured())[0]!)).toBe(NBD_ERR.EINVAL);
      c.request(42, 0, 0);
      expect(errorOf((await c.readStructured())[0]!)).toBe(NBD_ERR.EINVAL);
      // The connection still works after all those refusals, including unfragmented reads.
      c.request(CMD.READ, 0, 2 * CHUNK, CMD_FLAG.DF);
      chunks = await c.readStructured();
      expect(chunks).toHaveLength(1);
      expect(chunks[0]!.type).toBe(REPLY_TYPE.OFFSET_DATA);
      expect(sha(chunks[0]!.payload.subarray(8))).toBe(sha(image2.subarray(0, 2 * CHUNK)));
    } finally {
      c.close();
    }
  });

  it('uses simple replies when structured replies were not negotiated', async () => {
    const c = await TestClient.connect(port);
    try {
      await c.go(rev1.uuid);
      c.request(CMD.READ, CHUNK - 10, 30);
      const r = await c.readReply(30);
      expect(r.simple && r.error).toBe(0);
      expect(r.simple && sha(r.data)).toBe(sha(image1.subarray(CHUNK - 10, CHUNK + 20)));
      c.request(CMD.READ, 0, 40 * MiB);
      const e = await c.readReply(40 * MiB);
      expect(e.simple && e.error).toBe(NBD_ERR.EINVAL);
    } finally {
      c.close();
    }
  });

  it('reads holes as NBD_REPLY_TYPE_OFFSET_HOLE and reports block status per context', async () => {
    const c = await TestClient.connect(port);
    try {
      await c.go(rev1.uuid, { structured: true, allocation: true });
      c.request(CMD.READ, CHUNK - 512, CHUNK + 1024);
      const chunks = await c.readStructured();
      expect(chunks.map((x) => x.type)).toEqual([
        REPLY_TYPE.OFFSET_DATA,
        REPLY_TYPE.OFFSET_HOLE,
        REPLY_TYPE.OFFSET_DATA,
      ]);
      expect(chunks.map((x) => x.flags & REPLY_FLAG_DONE)).toEqual([0, 0, REPLY_FLAG_DONE]);
      c.request(CMD.BLOCK_STATUS, 0, image1.length);
      const [bs] = await c.readStructured();
      expect(bs!.type).toBe(REPLY_TYPE.BLOCK_STATUS);
      const extents: [number, number][] = [];
      for (let i = 4; i < bs!.payload.length; i += 8)
        extents.push([bs!.payload.readUInt32BE(i), bs!.payload.readUInt32BE(i + 4)]);
      expect(extents).toEqual([
        [CHUNK, 0],
        [CHUNK, 3],
        [2 * CHUNK, 0],
        [CHUNK, 3],
        [image1.length - 5 * CHUNK, 0],
      ]);
      c.request(CMD.BLOCK_STATUS, CHUNK + 10, 3 * CHUNK, CMD_FLAG.REQ_ONE);
      const [one] = await c.readStructured();
      expect(one!.payload.length).toBe(12);
      expect(one!.payload.readUInt32BE(4)).toBe(CHUNK - 10);
    } finally {
      c.close();
    }
  });

  it('survives clients that vanish mid-transfer and during the handshake', async () => {
    const before = logs.lines.length;
    for (let round = 0; round < 5; round++) {
      const c = await TestClient.connect(port);
      await c.go('last', { structured: true });
      for (let i = 0; i < 16; i++) c.request(CMD.READ, (i % 6) * CHUNK, CHUNK);
      await c.reader.read(1000); // the first reply is under way
      c.close();
    }
    const half = await TestClient.connect(port);
    half.sendOption(OPT.GO, encodeInfoRequest({ name: 'last', requests: [] }).subarray(0, 3)); // and never the rest
    half.close();
    await waitFor(() => server.connectionCount === 0);
    const errors = logs.lines.slice(before).filter((l) => (l.level as number) >= 50);
    expect(errors).toEqual([]);
    const c = await TestClient.connect(port);
    try {
      await c.go('last', { structured: true });
      expect(sha(await c.read(0, 2 * CHUNK))).toBe(sha(image2.subarray(0, 2 * CHUNK)));
    } finally {
      c.close();
    }
  });

  it('serves many clients at once while one client stalls without reading its replies', async () => {
    const stalled = await TestClient.connect(port);
    await stalled.go('last', { structured: true });
    stalled.socket.pause();
    for (let i = 0; i < 40; i++) stalled.request(CMD.READ, (i % 6) * CHUNK, CHUNK);
    const clients = await Promise.all(Array.from({ length: 12 }, () => TestClient.connect(port)));
    try {
      await Promise.all(
        clients.map(async (c, n) => {
          const [rev, img] = n % 2 === 0 ? [rev1, image1] : [rev2, image2];
          await c.go(rev.uuid, { structured: true });
          for (let i = 0; i < 10; i++) {
            const length = randomInt(1, MiB);
            const offset = randomInt(0, img.length - length);
            expect(sha(await c.read(offset, length))).toBe(sha(img.subarray(offset, offset + length)));
          }
        }),
      );
    } finally {
      for (const c of clients) c.close();
      stalled.close();
    }
    await waitFor(() => server.connectionCount === 0);
  });

  it('survives qemu-img being killed mid-transfer', async (ctx) => {
    needs(ctx, 'qemu-img');
    const { spawn } = await import('node:child_process');
    const child = spawn('qemu-img', [
      'convert',
      '-f',
      'raw',
      '-O',
      'raw',
      uri('last'),
      join(dir, 'killed.raw'),
    ]);
    await waitFor(() => server.connectionCount > 0);
    await new Promise((r) => setTimeout(r, 30));
    child.kill('SIGKILL');
    await waitFor(() => server.connectionCount === 0);
    expect((await run('nbdinfo', ['--size', uri('last')])).stdout.trim()).toBe(String(image2.length));
  });
});

describe('copy-on-write overlay', () => {
  let cowServer: NbdServer;
  let cowPort: number;

  beforeAll(async () => {
    cowServer = new NbdServer({
      exports: archiveExports(archive),
      logger: logs.logger,
      cow: true,
      overlayDir: dir,
    });
    cowPort = (await cowServer.listen(0, '127.0.0.1')).port;
  });
  afterAll(async () => {
    await cowServer.close();
  });

  it('keeps writes for the connection and discards them at disconnect', async () => {
    const c = await TestClient.connect(cowPort);
    try {
      await c.go(rev1.uuid, { structured: true, allocation: true });
      expect(c.transmissionFlags & TF.READ_ONLY).toBe(0);
      const patch = pseudoRandom(10_000, 99);
      // A partial write into a data chunk, one into a zero chunk, one across a chunk boundary.
      for (const offset of [100, CHUNK + 5000, 3 * CHUNK - 5000]) {
        c.request(CMD.WRITE, offset, patch.length, 0, patch);
        const r = await c.readReply();
        expect(r.simple && r.error).toBe(0);
      }
      c.request(CMD.WRITE_ZEROES, 5 * CHUNK, CHUNK);
      expect(((await c.readReply()) as { error: number }).error).toBe(0);
      c.request(CMD.TRIM, 2 * CHUNK + 10, 10);
      expect(((await c.readReply()) as { error: number }).error).toBe(0);
      const expected = Buffer.from(image1);
      for (const offset of [100, CHUNK + 5000, 3 * CHUNK - 5000]) patch.copy(expected, offset);
      expected.fill(0, 5 * CHUNK, 6 * CHUNK);
      expected.fill(0, 2 * CHUNK + 10, 2 * CHUNK + 20);
      expect(sha(await c.read(0, 3 * CHUNK))).toBe(sha(expected.subarray(0, 3 * CHUNK)));
      expect(sha(await c.read(3 * CHUNK, image1.length - 3 * CHUNK))).toBe(sha(expected.subarray(3 * CHUNK)));
      c.request(CMD.BLOCK_STATUS, 0, image1.length);
      const [bs] = await c.readStructured();
      const flags: number[] = [];
      for (let i = 4; i < bs!.payload.length; i += 8) flags.push(bs!.payload.readUInt32BE(i + 4));
      expect(flags).toEqual([0, 3, 0]); // chunk 1 now has data, chunk 5 joined the zero chunk 4
      c.request(CMD.FLUSH, 0, 0);
      expect(((await c.readReply()) as { error: number }).error).toBe(0);
    } finally {
      c.close();
    }
    await waitFor(() => cowServer.connectionCount === 0);
    const again = await TestClient.connect(cowPort);
    try {
      await again.go(rev1.uuid, { structured: true });
      expect(sha(await again.read(0, 3 * CHUNK))).toBe(sha(image1.subarray(0, 3 * CHUNK)));
    } finally {
      again.close();
    }
    expect(sha(await readFile(join(dir, 'vm1.img')))).toBe(sha(image1));
  });

  it('lets qemu-io write and read back within one session', async (ctx) => {
    needs(ctx, 'qemu-io');
    const r = await run('qemu-io', [
      '-f',
      'raw',
      '-c',
      'write -P 0xab 1M 64k',
      '-c',
      'read -P 0xab 1M 64k',
      '-c',
      'read -P 0 4M 4M',
      uri('daily', cowPort),
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/Pattern verification failed|error/i);
    const check = await run('qemu-io', [
      '-f',
      'raw',
      '-r',
      '-c',
      'read -P 0xab 1M 64k',
      uri('daily', cowPort),
    ]);
    expect(check.stdout).toMatch(/Pattern verification failed/);
  });
});

describe('handshake timeout', () => {
  it('drops a client that does not finish the handshake in time', async () => {
    const s = new NbdServer({
      exports: archiveExports(archive),
      logger: logs.logger,
      handshakeTimeoutMs: 200,
    });
    const p = (await s.listen(0, '127.0.0.1')).port;
    try {
      const idle = await TestClient.connect(p);
      const started = Date.now();
      await expect(idle.reader.read(1)).rejects.toThrow(/closed/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(150);
      // A client that went into transmission is not affected.
      const busy = await TestClient.connect(p);
      await busy.go('last', { structured: true });
      await new Promise((r) => setTimeout(r, 400));
      expect(sha(await busy.read(0, 4096))).toBe(sha(image2.subarray(0, 4096)));
      busy.close();
    } finally {
      await s.close();
    }
  });
});

describe('shutdown', () => {
  it('finishes running requests, refuses new ones and closes every connection', async () => {
    const stopper = new AbortController();
    const s = new NbdServer({
      exports: archiveExports(archive),
      logger: logs.logger,
      signal: stopper.signal,
    });
    const p = (await s.listen(0, '127.0.0.1')).port;
    const attached = await TestClient.connect(p);
    await attached.go('last', { structured: true });
    const negotiating = await TestClient.connect(p);
    attached.request(CMD.READ, 0, 4 * CHUNK);
    const first = await attached.readReply(); // the request is being served
    stopper.abort();
    const rest = await attached.readStructured();
    const chunks = [first, ...rest] as { type: number; flags: number }[];
    expect(chunks.at(-1)!.flags & REPLY_FLAG_DONE).toBe(REPLY_FLAG_DONE);
    expect(chunks.every((c) => c.type === REPLY_TYPE.OFFSET_DATA)).toBe(true);
    // A new request is refused with ESHUTDOWN, a new option with NBD_REP_ERR_SHUTDOWN.
    attached.request(CMD.READ, 0, 512);
    expect(errorOf((await attached.readStructured())[0]!)).toBe(NBD_ERR.ESHUTDOWN);
    expect((await negotiating.option(OPT.LIST)).at(-1)!.type).toBe(REP.ERR_SHUTDOWN);
    await expect(TestClient.connect(p)).rejects.toThrow();
    attached.request(CMD.DISC, 0, 0); // the soft disconnect a client does after ESHUTDOWN
    const started = Date.now();
    await s.closed();
    expect(s.connectionCount).toBe(0);
    await expect(negotiating.reader.read(1)).rejects.toThrow(/closed/);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
