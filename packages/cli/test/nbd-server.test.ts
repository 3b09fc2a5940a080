import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, backy, missingTools, oneLineError, tempDir } from './helpers.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let dir: { path: string; cleanup: () => Promise<void> };
let arch: string;
let image: string;
const b = (...args: string[]) => backy(['-b', arch, ...args]);
const missing = missingTools('qemu-img', 'qemu-io', 'nbdinfo', 'nbdcopy');
if (missing != null) console.warn(`[e2e] nbd-server tests skipped: ${missing}`);

interface Running {
  child: ChildProcess;
  port: number;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts `backy nbd-server` on a free port and waits for its "Serving" line. */
async function startServer(args: string[] = []): Promise<Running> {
  const child = spawn(process.execPath, [BIN, '-b', arch, 'nbd-server', '-p', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 15_000);
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /on nbd:\/\/\S+?:(\d+)\//.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.on('exit', () => reject(new Error(`server exited: ${stderr}`)));
  });
  return { child, port, stderr: () => stderr, exited };
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
    try {
      expect(server.stderr()).toMatch(/Serving 2 revisions .* \(read-only\)/);
      expect(server.stderr()).not.toMatch(/warning/); // loopback needs none
      for (const spec of ['last', 'manual:first']) {
        const restored = join(dir.path, `restored-${spec}.raw`);
        expect(b('restore', '-r', spec, restored).code).toBe(0);
        const viaQemu = join(dir.path, `qemu-${spec}.raw`);
        const q = spawnSync(
          'qemu-img',
          ['convert', '-f', 'raw', '-O', 'raw', `nbd://127.0.0.1:${server.port}/${spec}`, viaQemu],
          {
            encoding: 'utf8',
          },
        );
        expect(q.stderr).toBe('');
        const viaNbdcopy = join(dir.path, `nbdcopy-${spec}.raw`);
        const c = spawnSync('nbdcopy', [`nbd://127.0.0.1:${server.port}/${spec}`, viaNbdcopy], {
          encoding: 'utf8',
        });
        expect(c.status).toBe(0);
        const want = sha(await readFile(restored));
        expect(sha(await readFile(viaQemu))).toBe(want);
        expect(sha(await readFile(viaNbdcopy))).toBe(want);
      }
      const bad = spawnSync('nbdinfo', [`nbd://127.0.0.1:${server.port}/nope`], { encoding: 'utf8' });
      expect(bad.status).not.toBe(0);
      expect(bad.stderr).toMatch(/nope/);
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(130);
    expect(await readFile(join(arch, 'backy.log'), 'utf8')).toMatch(/NBD server stopped/);
  });

  it('with --cow lets a client write without changing the backup', async () => {
    const server = await startServer(['--cow', '--tmpdir', dir.path]);
    try {
      expect(server.stderr()).toMatch(/per-client overlay/);
      const uri = `nbd://127.0.0.1:${server.port}/last`;
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
    const server = await startServer(['-H', '::1']);
    try {
      expect(server.stderr()).toContain('nbd://[::1]:');
      const r = spawnSync('nbdinfo', ['--size', `nbd://[::1]:${server.port}/last`], { encoding: 'utf8' });
      expect(r.stdout.trim()).toBe(String(17 * MiB + 512));
    } finally {
      server.child.kill('SIGTERM');
    }
    await server.exited;
  });

  it('warns in one line when it listens beyond loopback', async () => {
    const server = await startServer(['-H', '0.0.0.0']);
    try {
      expect(server.stderr()).toMatch(
        /^backy: warning: NBD has no authentication and no encryption here; anyone who can reach 0\.0\.0\.0:\d+ can read these backups\nServing 2 revisions /,
      );
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(130);
  });

  it('reports a bad port or a busy address in one line', async () => {
    const usage = b('nbd-server', '-p', 'http');
    expect(usage.code).toBe(2);
    expect(oneLineError(usage)).toContain('invalid port');
    const blocker = createServer();
    const port = await new Promise<number>((resolve) =>
      blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)),
    );
    try {
      const busy = b('nbd-server', '-p', String(port));
      expect(busy.code).toBe(1);
      expect(oneLineError(busy)).toContain('address already in use');
    } finally {
      blocker.close();
    }
  });
});
