/**
 * Who may read the backups: the Unix socket's permissions, and TLS (PSK or certificates) over TCP, with
 * the real clients (qemu-img, nbdinfo) as an operator would run them.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Archive } from '@backy/core';
import { captureLogger } from '@backy/core/testing';
import { encodeInfoRequest, OPT, REP } from '@backy/nbd-protocol';
import { missingTools } from '@backy/test-env';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveExports } from './exports.js';
import { NbdServer } from './server.js';
import { TestClient } from './test-client.js';
import { backupImage, makeArchive, run, vmLikeImage, writeImage } from './test-helpers.js';
import { parsePskKeys } from './tls.js';
import type { NbdServerOptions } from './types.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const logs = captureLogger();
let dir: string;
let archive: Archive;
let image: Buffer;
const isRoot = process.getuid?.() === 0;

function needs(ctx: { skip: (note?: string) => void }, ...programs: string[]): void {
  const reason = missingTools(...programs);
  if (reason != null) {
    console.warn(`skipped: ${reason}`);
    ctx.skip(reason);
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backy-nbd-access-'));
  // Others may enter the directory: the socket's own mode is what must keep them out.
  await chmod(dir, 0o755);
  archive = await makeArchive(join(dir, 'archive'));
  image = vmLikeImage(1);
  await writeImage(join(dir, 'vm.img'), image);
  await backupImage(archive, join(dir, 'vm.img'), ['daily']);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function serve(
  options: Partial<NbdServerOptions> = {},
  listen: { tcp: true } | { socket: string; gid?: number } = { tcp: true },
): Promise<{ server: NbdServer; port: number; close: () => Promise<void> }> {
  const server = new NbdServer({ exports: archiveExports(archive), logger: logs.logger, ...options });
  let port = 0;
  if ('tcp' in listen) port = (await server.listen(0, '127.0.0.1')).port;
  else await server.listenUnix(listen.socket, { gid: listen.gid });
  return { server, port, close: () => server.close() };
}

/** `setpriv` to run a client as nobody:nogroup with no supplementary groups. */
const asNobody = (cmd: string, ...args: string[]) =>
  ['setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', cmd, ...args]] as const;

describe('Unix socket', () => {
  it('serves qemu-img and nbdinfo over nbd+unix:// from a socket only its owner can connect to', async (ctx) => {
    needs(ctx, 'qemu-img', 'nbdinfo');
    const socket = join(dir, 'nbd.sock');
    const { close } = await serve({}, { socket });
    try {
      const st = await stat(socket);
      expect(st.isSocket()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
      const out = join(dir, 'unix.raw');
      const r = await run('qemu-img', [
        'convert',
        '-f',
        'raw',
        '-O',
        'raw',
        `nbd+unix:///last?socket=${socket}`,
        out,
      ]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(sha(await readFile(out))).toBe(sha(image));
      const info = await run('nbdinfo', ['--size', `nbd+unix:///daily?socket=${socket}`]);
      expect(info.stdout.trim()).toBe(String(image.length));
    } finally {
      await close();
    }
    // The socket file is gone with the server.
    await expect(stat(socket)).rejects.toThrow(/ENOENT/);
  });

  it.skipIf(!isRoot)('refuses another user (nobody) with permission denied', async (ctx) => {
    needs(ctx, 'nbdinfo', 'setpriv');
    const socket = join(dir, 'private.sock');
    const { close } = await serve({}, { socket });
    try {
      const [cmd, args] = asNobody('nbdinfo', '--size', `nbd+unix:///last?socket=${socket}`);
      const r = await run(cmd, [...args]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Permission denied/);
      expect(r.stdout).toBe('');
    } finally {
      await close();
    }
  });

  it.skipIf(!isRoot)('lets a group in with mode 0660 when given one', async (ctx) => {
    needs(ctx, 'nbdinfo', 'setpriv');
    const socket = join(dir, 'group.sock');
    const { close } = await serve({}, { socket, gid: 65534 });
    try {
      const st = await stat(socket);
      expect(st.mode & 0o777).toBe(0o660);
      expect(st.gid).toBe(65534);
      const [cmd, args] = asNobody('nbdinfo', '--size', `nbd+unix:///last?socket=${socket}`);
      const r = await run(cmd, [...args]);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(String(image.length));
    } finally {
      await close();
    }
  });

  it('replaces a stale socket but refuses a live one and a file that is not a socket', async () => {
    const socket = join(dir, 'stale.sock');
    const first = await serve({}, { socket });
    // A second server on the same path must not steal it from the live one.
    await expect(serve({}, { socket })).rejects.toThrow(/another server is listening there/);
    await first.close();
    const plain = join(dir, 'not-a-socket');
    await writeFile(plain, 'keep me');
    await expect(serve({}, { socket: plain })).rejects.toThrow(/exists and is not a socket/);
    expect(await readFile(plain, 'utf8')).toBe('keep me');
  });
});

/** A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate, by openssl. */
async function makeCertificates(base: string): Promise<{ server: string; client: string; ca: string }> {
  const server = join(base, 'server');
  const client = join(base, 'client');
  await mkdir(server, { recursive: true });
  await mkdir(client, { recursive: true });
  const ssl = async (...args: string[]) => {
    const r = await run('openssl', args);
    if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  };
  const ca = join(base, 'ca-cert.pem');
  const caKey = join(base, 'ca-key.pem');
  await ssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=backy test CA',
    '-keyout',
    caKey,
    '-out',
    ca,
  );
  const ext = join(base, 'ext.cnf');
  await writeFile(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  for (const [where, name, cn] of [
    [server, 'server', 'localhost'],
    [client, 'client', 'backup-reader'],
  ] as const) {
    const key = join(where, `${name}-key.pem`);
    const csr = join(where, `${name}.csr`);
    await ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      key,
      '-out',
      csr,
    );
    await ssl(
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca,
      '-CAkey',
      caKey,
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      ext,
      '-out',
      join(where, `${name}-cert.pem`),
    );
  }
  // qemu's tls-creds-x509 and libnbd's tls-certificates read ca-cert.pem beside the client's files.
  await writeFile(join(client, 'ca-cert.pem'), await readFile(ca));
  return { server, client, ca };
}

describe('TLS over TCP', () => {
  it('PSK: nbdinfo and qemu-img get in with the key, a plain client and a wrong key do not', async (ctx) => {
    needs(ctx, 'qemu-img', 'nbdinfo');
    const pskDir = join(dir, 'psk');
    await mkdir(pskDir, { recursive: true });
    const keys = join(pskDir, 'keys.psk');
    await writeFile(keys, `alice:${'5a'.repeat(32)}\n`);
    const wrong = join(dir, 'wrong.psk');
    await writeFile(wrong, `alice:${'a5'.repeat(32)}\n`);
    const { port, close } = await serve({ tls: { psk: parsePskKeys(await readFile(keys, 'utf8')) } });
    try {
      const good = await run('nbdinfo', [
        '--size',
        `nbds://alice@127.0.0.1:${port}/last?tls-psk-file=${keys}`,
      ]);
      expect(good.stderr).toBe('');
      expect(good.stdout.trim()).toBe(String(image.length));

      const out = join(dir, 'psk.raw');
      const q = await run('qemu-img', [
        'convert',
        '--object',
        `tls-creds-psk,id=tls0,endpoint=client,dir=${pskDir},username=alice`,
        '--image-opts',
        `driver=nbd,host=127.0.0.1,port=${port},export=last,tls-creds=tls0`,
        '-O',
        'raw',
        out,
      ]);
      expect(q.stderr).toBe('');
      expect(q.code).toBe(0);
      expect(sha(await readFile(out))).toBe(sha(image));

      const plain = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/last`]);
      expect(plain.code).not.toBe(0);
      expect(plain.stdout).toBe('');
      expect(plain.stderr).toMatch(/TLS/);

      const plainQemu = await run('qemu-img', ['info', `nbd://127.0.0.1:${port}/last`]);
      expect(plainQemu.code).not.toBe(0);

      const bad = await run('nbdinfo', [
        '--size',
        `nbds://alice@127.0.0.1:${port}/last?tls-psk-file=${wrong}`,
      ]);
      expect(bad.code).not.toBe(0);
      expect(bad.stdout).toBe('');
      expect(logs.lines.some((r) => r.msg === 'TLS handshake failed; connection dropped')).toBe(true);
    } finally {
      await close();
    }
  });

  it('certificates: the server is verified by its CA, and with a CA clients need a certificate too', async (ctx) => {
    needs(ctx, 'qemu-img', 'nbdinfo', 'openssl');
    const certs = await makeCertificates(join(dir, 'x509'));
    const tls = {
      cert: await readFile(join(certs.server, 'server-cert.pem')),
      key: await readFile(join(certs.server, 'server-key.pem')),
    };
    const serverOnly = await serve({ tls });
    try {
      const r = await run('nbdinfo', [
        '--size',
        `nbds://localhost:${serverOnly.port}/last?tls-certificates=${certs.client}`,
      ]);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(String(image.length));
    } finally {
      await serverOnly.close();
    }

    const mutual = await serve({ tls: { ...tls, ca: await readFile(certs.ca) } });
    try {
      const out = join(dir, 'x509.raw');
      const q = await run('qemu-img', [
        'convert',
        '--object',
        `tls-creds-x509,id=tls0,endpoint=client,dir=${certs.client}`,
        '--image-opts',
        `driver=nbd,host=localhost,port=${mutual.port},export=last,tls-creds=tls0`,
        '-O',
        'raw',
        out,
      ]);
      expect(q.stderr).toBe('');
      expect(q.code).toBe(0);
      expect(sha(await readFile(out))).toBe(sha(image));
      expect(logs.lines.some((r) => r.msg === 'TLS established' && r.identity === 'backup-reader')).toBe(
        true,
      );

      // The CA alone (no client certificate) is not enough.
      const anonymous = join(dir, 'x509-anonymous');
      await mkdir(anonymous, { recursive: true });
      await writeFile(join(anonymous, 'ca-cert.pem'), await readFile(certs.ca));
      const refused = await run('nbdinfo', [
        '--size',
        `nbds://localhost:${mutual.port}/last?tls-certificates=${anonymous}`,
      ]);
      expect(refused.code).not.toBe(0);
      expect(refused.stdout).toBe('');
    } finally {
      await mutual.close();
    }
  });
});

describe('TLS in the handshake (raw client)', () => {
  let server: { port: number; close: () => Promise<void> };
  beforeAll(async () => {
    server = await serve({ tls: { psk: new Map([['alice', Buffer.alloc(32, 1)]]) } });
  });
  afterAll(() => server.close());

  it('answers every option but STARTTLS and ABORT with NBD_REP_ERR_TLS_REQD before TLS', async () => {
    const c = await TestClient.connect(server.port);
    try {
      for (const option of [OPT.LIST, OPT.STRUCTURED_REPLY, OPT.INFO, OPT.GO, OPT.LIST_META_CONTEXT]) {
        const data =
          option === OPT.INFO || option === OPT.GO
            ? encodeInfoRequest({ name: 'last', requests: [] })
            : undefined;
        const replies = await c.option(option, data);
        expect(replies).toHaveLength(1);
        expect(replies[0]!.type).toBe(REP.ERR_TLS_REQD);
      }
      // STARTTLS with data is malformed; the client may still start TLS properly afterwards.
      expect((await c.option(OPT.STARTTLS, Buffer.from('x')))[0]!.type).toBe(REP.ERR_INVALID);
      expect((await c.option(OPT.STARTTLS))[0]!.type).toBe(REP.ACK);
    } finally {
      c.close();
    }
  });

  it('closes on NBD_OPT_EXPORT_NAME without TLS (that option cannot carry an error)', async () => {
    const c = await TestClient.connect(server.port);
    c.sendOption(OPT.EXPORT_NAME, Buffer.from('last'));
    await expect(c.reader.read(1)).rejects.toThrow(/closed/);
  });

  it('keeps refusing STARTTLS where no TLS is configured (NBD_REP_ERR_POLICY)', async () => {
    const plain = await serve();
    const c = await TestClient.connect(plain.port);
    try {
      expect((await c.option(OPT.STARTTLS))[0]!.type).toBe(REP.ERR_POLICY);
    } finally {
      c.close();
      await plain.close();
    }
  });
});

describe('parsePskKeys', () => {
  it('reads identity:hexkey lines and names the line it cannot read', () => {
    const keys = parsePskKeys('alice:00ff\n\nbob:0102\n');
    expect([...keys.keys()]).toEqual(['alice', 'bob']);
    expect(keys.get('alice')).toEqual(Buffer.from([0, 255]));
    expect(() => parsePskKeys('alice:00ff\nbob 0102\n', 'keys.psk')).toThrow(
      'keys.psk:2: expected IDENTITY:HEXKEY',
    );
    expect(() => parsePskKeys('\n', 'keys.psk')).toThrow('keys.psk: no keys');
  });
});
