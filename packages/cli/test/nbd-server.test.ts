import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, backy, missingTools, oneLineError, tempDir } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let dir: { path: string; cleanup: () => Promise<void> };
let arch: string;
let image: string;
const b = (...args: string[]) => backy(['-b', arch, ...args]);
const missing = missingTools('qemu-img', 'qemu-io', 'nbdinfo', 'nbdcopy');
if (missing != null) console.warn(`[e2e] nbd-server tests skipped: ${missing}`);

interface Running {
  child: ChildProcess;
  /** The TCP port, 0 on a Unix socket. */
  port: number;
  /** The URI of an export as the server's "Serving … on URI" line spells it. */
  uri: (spec: string) => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/**
 * Starts `backy nbd-server` (on its default Unix socket unless `args` ask for TCP) and waits for its
 * "Serving" line.
 */
async function startServer(args: string[] = []): Promise<Running> {
  const child = spawn(process.execPath, [BIN, '-b', arch, 'nbd-server', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const where = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 15_000);
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = / on (nbds?(?:\+unix)?:\/\/\S*SPEC\S*) \(/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', () => reject(new Error(`server exited: ${stderr}`)));
  });
  const port = Number(/:(\d+)\/SPEC/.exec(where)?.[1] ?? 0);
  return { child, port, uri: (spec) => where.replace('SPEC', spec), stderr: () => stderr, exited };
}

beforeAll(async () => {
  dir = await tempDir();
  image = join(dir.path, 'disk.img');
  arch = join(dir.path, 'archive');
  await writeFile(
    image,
    Buffer.concat([randomBytes(6 * MiB), Buffer.alloc(8 * MiB), randomBytes(3 * MiB + 512)]),
  );
  expect(b('init', 'file', image).code).toBe(0);
  expect(b('backup', 'manual:first').code).toBe(0);
  const changed = await readFile(image);
  randomBytes(MiB).copy(changed, 7 * MiB);
  await writeFile(image, changed);
  expect(b('backup', 'manual:second').code).toBe(0);
});
afterAll(() => dir?.cleanup());

describe.skipIf(missing != null)('backy nbd-server', () => {
  it('serves revisions that real clients copy byte-identical to `backy restore`, and stops on SIGTERM', async () => {
    const server = await startServer();
    const socket = join(arch, 'nbd.sock');
    try {
      expect(server.stderr()).toBe(
        `Serving 2 revisions of ${arch} on nbd+unix:///SPEC?socket=${socket} (read-only, only this user can connect), ` +
          `e.g. nbd+unix:///last?socket=${socket}. Stop with Ctrl-C.\n`,
      );
      expect((await stat(socket)).mode & 0o777).toBe(0o600);
      for (const spec of ['last', 'manual:first']) {
        const restored = join(dir.path, `restored-${spec}.raw`);
        expect(b('restore', '-r', spec, restored).code).toBe(0);
        const viaQemu = join(dir.path, `qemu-${spec}.raw`);
        const q = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', server.uri(spec), viaQemu], {
          encoding: 'utf8',
        });
        expect(q.stderr).toBe('');
        const viaNbdcopy = join(dir.path, `nbdcopy-${spec}.raw`);
        const c = spawnSync('nbdcopy', [server.uri(spec), viaNbdcopy], {
          encoding: 'utf8',
        });
        expect(c.status).toBe(0);
        const want = sha(await readFile(restored));
        expect(sha(await readFile(viaQemu))).toBe(want);
        expect(sha(await readFile(viaNbdcopy))).toBe(want);
      }
      const bad = spawnSync('nbdinfo', [server.uri('nope')], { encoding: 'utf8' });
      expect(bad.status).not.toBe(0);
      expect(bad.stderr).toMatch(/nope/);
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(130);
    expect(await readFile(join(arch, 'backy.log'), 'utf8')).toMatch(/NBD server stopped/);
    await expect(stat(socket)).rejects.toThrow(/ENOENT/);
  });

  it('with --cow lets a client write without changing the backup', async () => {
    const server = await startServer(['--cow', '--tmpdir', dir.path]);
    try {
      expect(server.stderr()).toMatch(/per-client overlay/);
      const uri = server.uri('last');
      const w = spawnSync(
        'qemu-io',
        ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', 'read -P 0x5a 0 1M', uri],
        {
          encoding: 'utf8',
        },
      );
      expect(w.status).toBe(0);
      expect(w.stdout).not.toMatch(/fail/i);
      const after = join(dir.path, 'after-cow.raw');
      expect(spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, after]).status).toBe(0);
      const restored = join(dir.path, 'restored-last.raw');
      expect(sha(await readFile(after))).toBe(sha(await readFile(restored)));
    } finally {
      server.child.kill('SIGINT');
    }
    expect(await server.exited).toBe(130);
  });

  it('listens on ::1 when asked', async (ctx) => {
    const probe = createServer();
    const v6 = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(0, '::1', () => probe.close(() => resolve(true)));
    });
    if (!v6) {
      console.warn('[e2e] ::1 test skipped: no IPv6 loopback on this machine');
      ctx.skip();
    }
    const server = await startServer(['-H', '::1', '-p', '0', '--insecure-tcp']);
    try {
      expect(server.stderr()).toContain('nbd://[::1]:');
      const r = spawnSync('nbdinfo', ['--size', `nbd://[::1]:${server.port}/last`], { encoding: 'utf8' });
      expect(r.stdout.trim()).toBe(String(17 * MiB + 512));
    } finally {
      server.child.kill('SIGTERM');
    }
    await server.exited;
  });

  it('serves TCP without TLS only with --insecure-tcp, and then warns in one line', async () => {
    const refused = b('nbd-server', '-H', '127.0.0.1', '-p', '0');
    expect(refused.code).toBe(2);
    expect(oneLineError(refused)).toBe(
      'backy: error: nbd-server: TCP needs TLS (--tls-psk FILE, or --tls-cert FILE --tls-key FILE) or --insecure-tcp; without -H/-p it serves on a Unix socket',
    );
    const server = await startServer(['-H', '0.0.0.0', '-p', '0', '--insecure-tcp']);
    try {
      expect(server.stderr()).toMatch(
        /^backy: warning: NBD over TCP without TLS: anyone who can connect to 0\.0\.0\.0:\d+ \(every local user at least\) can read these backups\nServing 2 revisions /,
      );
      const r = spawnSync('nbdinfo', ['--size', `nbd://127.0.0.1:${server.port}/last`], { encoding: 'utf8' });
      expect(r.stdout.trim()).toBe(String(17 * MiB + 512));
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(130);
  });

  it('reports a bad port or a busy address in one line', async () => {
    const usage = b('nbd-server', '-p', 'http', '--insecure-tcp');
    expect(usage.code).toBe(2);
    expect(oneLineError(usage)).toContain('invalid port');
    const blocker = createServer();
    const port = await new Promise<number>((resolve) =>
      blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)),
    );
    try {
      const busy = b('nbd-server', '-p', String(port), '--insecure-tcp');
      expect(busy.code).toBe(1);
      expect(oneLineError(busy)).toContain('address already in use');
    } finally {
      blocker.close();
    }
  });

  it('over TCP with --tls-psk serves nbds:// clients that hold the key and nobody else', async () => {
    const keys = join(dir.path, 'keys.psk');
    await writeFile(keys, `reader:${randomBytes(32).toString('hex')}\n`, { mode: 0o644 });
    const exposed = b('nbd-server', '-p', '0', '--tls-psk', keys);
    expect(exposed.code).toBe(2);
    expect(oneLineError(exposed)).toBe(
      `backy: error: nbd-server: --tls-psk ${keys} is accessible to other users (mode 644); chmod o-rwx it`,
    );
    await chmod(keys, 0o600);
    const server = await startServer(['-p', '0', '--tls-psk', keys]);
    try {
      expect(server.stderr()).not.toMatch(/warning/);
      expect(server.uri('last')).toBe(`nbds://127.0.0.1:${server.port}/last`);
      const good = spawnSync(
        'nbdinfo',
        ['--size', `nbds://reader@127.0.0.1:${server.port}/last?tls-psk-file=${keys}`],
        {
          encoding: 'utf8',
        },
      );
      expect(good.stderr).toBe('');
      expect(good.stdout.trim()).toBe(String(17 * MiB + 512));
      const plain = spawnSync('nbdinfo', ['--size', `nbd://127.0.0.1:${server.port}/last`], {
        encoding: 'utf8',
      });
      expect(plain.status).not.toBe(0);
      expect(plain.stdout).toBe('');
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(130);
  });

  it.skipIf(process.getuid?.() !== 0 || missingTools('setpriv') != null)(
    'keeps other users (nobody) off the default socket, and lets a --socket-group in',
    async () => {
      // nobody may enter the archive directory; only the socket's own mode keeps it out.
      const modes = [(await stat(dir.path)).mode & 0o777, (await stat(arch)).mode & 0o777] as const;
      await chmod(dir.path, 0o711);
      await chmod(arch, 0o755);
      const socket = join(arch, 'shared.sock');
      const asNobody = (uri: string) =>
        spawnSync(
          'setpriv',
          ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'nbdinfo', '--size', uri],
          {
            encoding: 'utf8',
          },
        );
      const server = await startServer();
      try {
        const r = asNobody(server.uri('last'));
        expect(r.status).not.toBe(0);
        expect(r.stderr).toMatch(/Permission denied/);
      } finally {
        server.child.kill('SIGTERM');
      }
      await server.exited;
      const grouped = await startServer(['--socket', socket, '--socket-group', 'nogroup']);
      try {
        expect(grouped.stderr()).toContain('this user and group nogroup can connect');
        expect((await stat(socket)).mode & 0o777).toBe(0o660);
        expect(asNobody(grouped.uri('last')).stdout.trim()).toBe(String(17 * MiB + 512));
      } finally {
        grouped.child.kill('SIGTERM');
      }
      await grouped.exited;
      await chmod(dir.path, modes[0]);
      await chmod(arch, modes[1]);
    },
  );
});
