/**
 * Who may change what the daemon does through the shell: anyone on the Unix socket (its permissions
 * decide who connects), on TCP only after `auth TOKEN`, or everyone with the explicit 2.x setting.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { missingTools } from '@backy/test-env';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readTokenFile } from './auth.js';
import { type ShellBackend, TelnetShell, type TelnetShellOptions } from './shell.js';

const logger = pino({ level: 'silent' });
const TOKEN = 'c0ffee-0123456789abcdef';

class Backend implements ShellBackend {
  calls: string[] = [];
  jobs() {
    return [];
  }
  summary() {
    return { jobs: 0, states: {}, workerLimit: 1, busyWorkers: 0, idleWorkers: 1 };
  }
  runJob(name: string) {
    this.calls.push(`run ${name}`);
    return 'started';
  }
  runAll() {
    this.calls.push('runall');
    return 2;
  }
  async reload() {
    this.calls.push('reload');
    return { ok: true as const, added: [], removed: [], changed: [] };
  }
}

/** One connection; `command` sends a line and returns what came back up to the next prompt. */
class Client {
  private text = '';
  closed = false;
  private constructor(readonly socket: Socket) {
    socket.on('data', (d) => {
      this.text += d.toString('utf8');
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => {});
  }
  static async open(where: { port: number } | { path: string }): Promise<Client> {
    const socket = connect('path' in where ? { path: where.path } : { port: where.port, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new Client(socket);
    await c.until(() => c.text.includes('backy> '));
    return c;
  }
  private async until(done: () => boolean): Promise<void> {
    const end = Date.now() + 5000;
    while (!done()) {
      if (Date.now() > end) throw new Error(`timed out; got:\n${this.text}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  async command(line: string): Promise<string> {
    const start = this.text.length;
    this.socket.write(`${line}\r\n`);
    await this.until(() => this.text.slice(start).includes('backy> ') || this.closed);
    return this.text.slice(start).replace(/backy> $/, '');
  }
}

let dir: string;
let shell: TelnetShell | null = null;
const clients: Client[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backy-shell-auth-'));
  await chmod(dir, 0o755);
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.socket.destroy();
  await shell?.close();
  shell = null;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function start(options: Partial<TelnetShellOptions> = {}) {
  const backend = new Backend();
  shell = await TelnetShell.listen({
    backend,
    logger,
    version: '1.0',
    addresses: ['127.0.0.1'],
    port: 0,
    ...options,
  });
  const port = shell.listening[0]?.port ?? 0;
  const open = async (where: { port: number } | { path: string } = { port }) => {
    const c = await Client.open(where);
    clients.push(c);
    return c;
  };
  return { backend, open };
}

describe('telnet shell access', () => {
  it('refuses run, runall and reload on TCP without a token, and still answers jobs and status', async () => {
    const { backend, open } = await start({ socketPath: join(dir, 'a.sock') });
    const c = await open();
    for (const line of ['runall', 'reload', 'run web01']) {
      const verb = line.split(' ')[0];
      expect(await c.command(line)).toBe(
        `error: ${verb} is not allowed here without authentication: use the Unix socket ${join(dir, 'a.sock')}\r\n`,
      );
    }
    expect(await c.command('auth anything')).toBe(
      `error: no token is configured (global.telnet-token-file); use the Unix socket ${join(dir, 'a.sock')}\r\n`,
    );
    expect(await c.command('status')).toMatch(/^jobs: 0\r\n/);
    expect(backend.calls).toEqual([]);
  });

  it('allows them on TCP after auth with the right token, never with a wrong one', async () => {
    const { backend, open } = await start({ token: TOKEN });
    const c = await open();
    expect(await c.command('runall')).toBe(
      'error: runall is not allowed here without authentication: send "auth TOKEN" first\r\n',
    );
    expect(await c.command('auth not-the-token')).toBe('error: wrong token\r\n');
    expect(await c.command('reload')).toMatch(/^error: reload is not allowed here/);
    expect(backend.calls).toEqual([]);
    expect(await c.command(`auth ${TOKEN}`)).toBe('ok: run, runall and reload allowed\r\n');
    expect(await c.command('runall')).toBe('2 jobs started or queued\r\n');
    expect(await c.command('reload')).toMatch(/^config reloaded/);
    expect(backend.calls).toEqual(['runall', 'reload']);
    // Authentication belongs to the connection, not to the address.
    const other = await open();
    expect(await other.command('runall')).toMatch(/^error: runall is not allowed here/);
    expect(backend.calls).toEqual(['runall', 'reload']);
  });

  it('disconnects a client after three wrong tokens', async () => {
    const { open } = await start({ token: TOKEN });
    const c = await open();
    await c.command('auth a');
    await c.command('auth b');
    expect(await c.command('auth c')).toBe('error: wrong token. Goodbye.\r\n');
    await new Promise((r) => setTimeout(r, 100));
    expect(c.closed).toBe(true);
  });

  it('allows everything on its Unix socket, which only its owner can connect to', async () => {
    const path = join(dir, 'b.sock');
    const { backend, open } = await start({ socketPath: path, addresses: [] });
    expect(shell!.listening).toEqual([]);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const c = await open({ path });
    expect(await c.command('runall')).toBe('2 jobs started or queued\r\n');
    expect(await c.command('run web01')).toBe('web01: started\r\n');
    expect(backend.calls).toEqual(['runall', 'run web01']);
    await shell!.close();
    shell = null;
    await expect(stat(path)).rejects.toThrow(/ENOENT/);
  });

  it.skipIf(process.getuid?.() !== 0 || missingTools('setpriv', 'nc') != null)(
    'keeps another user (nobody) off the socket',
    async () => {
      const path = join(dir, 'c.sock');
      const { backend } = await start({ socketPath: path });
      const r = await new Promise<{ code: number; stderr: string; stdout: string }>((resolve) => {
        const child = execFile(
          'setpriv',
          ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'nc', '-N', '-U', path],
          { encoding: 'utf8', timeout: 10_000 },
          (error, stdout, stderr) =>
            resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
        child.stdin!.end('runall\n');
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Permission denied/);
      expect(r.stdout).toBe('');
      expect(backend.calls).toEqual([]);
    },
  );

  it('keeps backy 2.x habits with insecureTcp: runall on TCP without a token', async () => {
    const { backend, open } = await start({ insecureTcp: true });
    const c = await open();
    expect(await c.command('runall')).toBe('2 jobs started or queued\r\n');
    expect(backend.calls).toEqual(['runall']);
  });
});

describe('readTokenFile', () => {
  it('reads the first line and refuses a file others can read or a short token', async () => {
    const file = join(dir, 'token');
    await writeFile(file, `${TOKEN}\n`, { mode: 0o640 });
    await chmod(file, 0o640);
    expect(await readTokenFile(file)).toBe(TOKEN);
    await chmod(file, 0o644);
    await expect(readTokenFile(file)).rejects.toThrow(
      `global.telnet-token-file ${file} is accessible to other users (mode 644); chmod o-rwx it`,
    );
    await writeFile(file, 'short\n', { mode: 0o600 });
    await chmod(file, 0o600);
    await expect(readTokenFile(file)).rejects.toThrow(/at least 16 characters/);
    await expect(readTokenFile(join(dir, 'missing'))).rejects.toThrow(/missing: ENOENT/);
  });
});
