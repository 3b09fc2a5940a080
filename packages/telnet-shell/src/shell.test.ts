import { connect, type Socket } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type ShellBackend, type ShellJob, TelnetShell } from './shell.js';
import { DO, DONT, IAC, IP, SB, SE, TelnetDecoder, WILL, WONT } from './telnet.js';

const logger = pino({ level: 'silent' });

function job(name: string, extra: Partial<ShellJob> = {}): ShellJob {
  return {
    job: name,
    sla: 'OK',
    sla_overdue: 0,
    status: 'waiting',
    last_time: '2026-01-05T10:00:00.000Z',
    last_tags: 'daily,weekly',
    last_duration: 75,
    next_time: '2026-01-06T10:00:00.000Z',
    next_tags: 'daily',
    ...extra,
  };
}

class FakeBackend implements ShellBackend {
  list = [
    job('web01'),
    job('web02', {
      sla: 'TOO OLD',
      sla_overdue: 7300,
      status: 'failed',
      last_outcome: 'failed',
      last_reason: 'source /srv/images/web02.img: not found',
      consecutive_failures: 3,
      last_success: '2026-01-04T10:00:12.000Z',
    }),
    job('db1', { last_time: null, last_tags: null, last_duration: null }),
    job('vm07', { last_snapshot: 'direct' }),
  ];
  runs: string[] = [];
  reloadResult: Awaited<ReturnType<ShellBackend['reload']>> = {
    ok: true,
    added: ['x'],
    removed: [],
    changed: ['web01'],
  };
  jobs(filter?: RegExp) {
    return this.list.filter((j) => filter == null || filter.test(j.job));
  }
  summary() {
    return {
      jobs: 3,
      states: { waiting: 2, running: 1, failed: 0 },
      workerLimit: 2,
      busyWorkers: 1,
      idleWorkers: 1,
    };
  }
  runJob(name: string) {
    this.runs.push(name);
    return this.list.some((j) => j.job === name) ? 'started' : 'unknown job';
  }
  runAll() {
    return 3;
  }
  async reload() {
    return this.reloadResult;
  }
}

/** A raw client: sends bytes, collects everything the server says. */
class Client {
  readonly socket: Socket;
  received = Buffer.alloc(0);
  closed = false;
  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d) => {
      this.received = Buffer.concat([this.received, d]);
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => {});
  }
  static open(port: number, host = '127.0.0.1'): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host }, () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }
  get text() {
    return this.received.toString('utf8');
  }
  send(data: string | Buffer | number[]) {
    this.socket.write(Array.isArray(data) ? Buffer.from(data) : data);
  }
  /** Waits until the output contains `needle` `count` times. */
  async waitFor(needle: string, count = 1, timeoutMs = 5000): Promise<string> {
    const end = Date.now() + timeoutMs;
    while (this.text.split(needle).length - 1 < count) {
      if (Date.now() > end)
        throw new Error(`timed out waiting for ${JSON.stringify(needle)} x${count}; got:\n${this.text}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.text;
  }
  /** Sends a command line and returns the output up to the next prompt. */
  async command(line: string, ending = '\r\n'): Promise<string> {
    const before = this.text.split('backy> ').length - 1;
    const start = this.text.length;
    this.send(line + ending);
    await this.waitFor('backy> ', before + 1);
    return this.text.slice(start).replace(/backy> $/, '');
  }
}

let shell: TelnetShell | null = null;
const clients: Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.socket.destroy();
  await shell?.close();
  shell = null;
});

async function start(
  backend = new FakeBackend(),
  extra: Partial<ConstructorParameters<typeof Object>[0]> = {},
) {
  shell = await TelnetShell.listen({
    backend,
    logger,
    version: '9.8.7',
    addresses: ['127.0.0.1'],
    port: 0,
    timeZone: 'UTC',
    ...extra,
  });
  const port = shell.listening[0]!.port;
  const open = async () => {
    const c = await Client.open(port);
    clients.push(c);
    await c.waitFor('backy> ');
    return c;
  };
  return { backend, port, open };
}

describe('TelnetDecoder', () => {
  it('ends lines at CR LF, CR NUL and bare LF, also split across packets', () => {
    const d = new TelnetDecoder();
    const lines = [
      ...d.push(Buffer.from('jobs\r\nstat')),
      ...d.push(Buffer.from('us\r')),
      ...d.push(Buffer.from([0])),
      ...d.push(Buffer.from('help\nquit\r')),
    ]
      .filter((e) => e.type === 'line')
      .map((e) => (e as { text: string }).text);
    expect(lines).toEqual(['jobs', 'status', 'help', 'quit']);
  });

  it('strips negotiation, refuses options once, skips subnegotiation, keeps IAC IAC as data', () => {
    const d = new TelnetDecoder();
    const events = d.push(
      Buffer.from([
        IAC,
        DO,
        1,
        IAC,
        WILL,
        31,
        IAC,
        WONT,
        3,
        IAC,
        DONT,
        5,
        IAC,
        SB,
        24,
        0,
        65,
        66,
        IAC,
        SE,
        0x6a,
        0x6f,
        IAC,
        IAC,
        0x62,
        0x73,
        13,
        10,
      ]),
    );
    expect(events.filter((e) => e.type === 'reply').map((e) => [...(e as { data: Buffer }).data])).toEqual([
      [IAC, WONT, 1],
      [IAC, DONT, 31],
    ]);
    // 0xFF alone is not valid UTF-8: it becomes a replacement character.
    expect(events.filter((e) => e.type === 'line')).toEqual([{ type: 'line', text: 'jo\ufffdbs' }]);
  });

  it('handles backspace, interrupt and overlong lines', () => {
    const d = new TelnetDecoder({ maxLineBytes: 10 });
    expect(d.push(Buffer.from('jobx\x7fs\r\n'))).toEqual([{ type: 'line', text: 'jobs' }]);
    expect(d.push(Buffer.from([0x61, 0x62, IAC, IP]))).toEqual([{ type: 'interrupt' }]);
    expect(d.push(Buffer.from('status\n'))).toEqual([{ type: 'line', text: 'status' }]);
    expect(d.push(Buffer.from(`${'x'.repeat(50)}\nhelp\n`))).toEqual([
      { type: 'overflow' },
      { type: 'line', text: 'help' },
    ]);
  });
});

describe('TelnetShell', () => {
  it('greets with the version and a prompt, lists jobs in a table', async () => {
    const { open } = await start();
    const c = await open();
    expect(c.text).toBe('backy 9.8.7\r\nReady.\r\nbacky> ');
    const out = await c.command('jobs');
    expect(out).toContain('\r\n');
    // Telnet line ends everywhere: no bare LF.
    expect(out).not.toMatch(/[^\r]\n/);
    const lines = out.split('\r\n');
    const header = lines.find((l) => l.includes('Job'))!;
    for (const col of [
      'Job',
      'SLA',
      'SLA overdue',
      'Status',
      'Last Backup (UTC)',
      'Last Tags',
      'Last Dur',
      'Next Backup (UTC)',
      'Next Tags',
    ]) {
      expect(header).toContain(col);
    }
    const web02 = lines.find((l) => l.includes('web02'))!;
    expect(web02).toMatch(
      /web02\s+│\s+TOO OLD\s+│\s+2h01m\s+│\s+failed\s+│\s+2026-01-05 10:00:00\s+│\s+daily,weekly\s+│\s+1m15s\s+│\s+2026-01-06 10:00:00\s+│\s+daily\s+│/,
    );
    expect(lines.find((l) => l.includes('db1'))).toMatch(
      /db1\s+│\s+OK\s+│\s+-\s+│\s+waiting\s+│\s+-\s+│\s+-\s+│\s+-\s+│/,
    );
    // A flyingcircus revision whose snapshot fell back to a plain one says so.
    expect(lines.find((l) => l.includes('vm07'))).toMatch(/│\s+daily,weekly \(crash-consistent\)\s+│/);
    expect(lines.find((l) => l.includes('web01'))).not.toContain('crash-consistent');
    expect(out).toContain('4 jobs shown\r\n');
    // No colour codes for telnet clients.
    expect(out).not.toContain('\x1b[');
  });

  it("shows each job's last outcome, failures in a row, last success, and why the last run failed", async () => {
    const { open } = await start();
    const c = await open();
    const lines = (await c.command('jobs')).split('\r\n');
    const header = lines.find((l) => l.includes('Job'))!;
    expect(header).toMatch(/│ Last Run +│ Last Success \(UTC\) +│$/);
    expect(lines.find((l) => l.includes('web02'))).toMatch(
      /│\s+daily\s+│\s+failed ×3\s+│\s+2026-01-04 10:00:12\s+│$/,
    );
    // A job that has not run under this daemon yet shows no outcome rather than a made-up one.
    expect(lines.find((l) => l.includes('web01'))).toMatch(/│\s+-\s+│\s+-\s+│$/);
    expect(lines).toContain('web02: failed: source /srv/images/web02.img: not found');
    expect(
      lines.filter((l) => /^\w+: (failed|verification-failed|copy-failed|skipped-busy): /.test(l)),
    ).toHaveLength(1);
  });

  it('filters jobs by regex and reports invalid regexes', async () => {
    const { open } = await start();
    const c = await open();
    const out = await c.command('jobs ^web');
    expect(out).toContain('web01');
    expect(out).toContain('web02');
    expect(out).not.toContain('db1');
    expect(out).toContain('2 jobs shown');
    expect(await c.command('jobs [unclosed')).toMatch(/^error: invalid regular expression: .*\r\n$/);
    expect(await c.command('jobs nomatch')).toContain('0 jobs shown');
  });

  it('matches a pattern that backtracks catastrophically in linear time (a client cannot stall the daemon)', async () => {
    const { open, backend } = await start();
    // With JavaScript's RegExp, `(a+)+$` against this name takes far longer than the test's timeout.
    backend.list.push(job(`${'a'.repeat(40)}b`));
    const c = await open();
    const started = performance.now();
    const out = await c.command('jobs (a+)+$');
    expect(performance.now() - started).toBeLessThan(1000);
    expect(out).toContain('0 jobs shown');
    expect(await c.command('jobs ^a+b$')).toContain('1 jobs shown');
    // Syntax RE2 does not have (lookahead) is an invalid pattern, not a crash.
    expect(await c.command('jobs (?=web)')).toMatch(/^error: invalid regular expression: .*\r\n$/);
  });

  it('answers status, run, runall, reload, help and quit', async () => {
    // backy 2.x's open TCP shell, configured explicitly (auth.test.ts covers the default).
    const { open, backend } = await start(undefined, { insecureTcp: true });
    const c = await open();
    expect(await c.command('status')).toBe(
      'jobs: 3\r\n  waiting    2\r\n  running    1\r\n  failed     0\r\nworkers: 1 busy, 1 idle (limit 2)\r\n',
    );
    expect(await c.command('run web01')).toBe('web01: started\r\n');
    expect(await c.command('run nope')).toBe('error: unknown job "nope"\r\n');
    expect(await c.command('run')).toBe('error: usage: run JOB\r\n');
    expect(backend.runs).toEqual(['web01', 'nope']);
    expect(await c.command('runall')).toBe('3 jobs started or queued\r\n');
    expect(await c.command('reload')).toBe('config reloaded: 1 added, 0 removed, 1 changed\r\n');
    backend.reloadResult = { ok: false, error: 'backy.conf: jobs.x.schedule: unknown schedule "y"' };
    expect(await c.command('reload')).toBe(
      'error: reload rejected, the old config stays in force: backy.conf: jobs.x.schedule: unknown schedule "y"\r\n',
    );
    expect(await c.command('help')).toContain('jobs [REGEX]');
    c.send('quit\r\n');
    await c.waitFor('Goodbye.\r\n');
    await new Promise((r) => setTimeout(r, 100));
    expect(c.closed).toBe(true);
  });

  it('survives garbage, unknown commands and very long lines', async () => {
    const { open } = await start(undefined, { maxLineBytes: 1000 });
    const c = await open();
    expect(await c.command('frobnicate now')).toBe(
      'error: unknown command "frobnicate"; type help for a list\r\n',
    );
    expect(await c.command('\x01\x02\x1b[A garbage')).toBe(
      'error: unknown command "[A"; type help for a list\r\n',
    );
    const prompts = c.text.split('backy> ').length - 1;
    c.send(Buffer.from([0xc3, 0x28, 0x80, 0x81, 0x0d, 0x0a]));
    await c.waitFor('backy> ', prompts + 1);
    expect(c.text).toContain('error: unknown command "\ufffd(\ufffd\ufffd"');
    expect(await c.command('x'.repeat(100_000))).toBe('error: line too long (more than 1000 bytes)\r\n');
    // Still works afterwards.
    expect(await c.command('jobs db')).toContain('1 jobs shown');
  });

  it('takes CR NUL line ends and answers telnet negotiation like a real server', async () => {
    const { open } = await start();
    const c = await open();
    const start1 = c.text.length;
    c.send([IAC, DO, 1, IAC, WILL, 24]);
    await new Promise((r) => setTimeout(r, 100));
    expect([...c.received.subarray(start1)]).toEqual([IAC, WONT, 1, IAC, DONT, 24]);
    expect(await c.command('status', '\r\0')).toContain('jobs: 3');
    expect(await c.command('status', '\n')).toContain('jobs: 3');
  });

  it('serves many clients at once; clients that vanish mid-line do not matter', async () => {
    const { open, port } = await start();
    const many = await Promise.all(Array.from({ length: 20 }, () => open()));
    // Some vanish in the middle of a line or of a long output.
    for (const c of many.slice(0, 5)) {
      c.send('jobs we');
      c.socket.destroy();
    }
    for (const c of many.slice(5, 10)) {
      c.send('jobs\r\n'.repeat(50));
      c.socket.destroy();
    }
    const outputs = await Promise.all(many.slice(10).map((c) => c.command('jobs web01')));
    for (const out of outputs) expect(out).toContain('1 jobs shown');
    const late = await Client.open(port);
    clients.push(late);
    await late.waitFor('backy> ');
    expect(await late.command('status')).toContain('jobs: 3');
  });

  it('works with a client that sends a script and closes its side (nc)', async () => {
    const { port } = await start();
    const c = await Client.open(port);
    clients.push(c);
    c.socket.end('status\njobs db\n');
    const end = Date.now() + 5000;
    while (!c.closed && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(c.closed).toBe(true);
    expect(c.text).toContain('jobs: 3');
    expect(c.text).toContain('1 jobs shown');
  });

  it('turns away clients beyond the limit', async () => {
    const { open, port } = await start(undefined, { maxClients: 2 });
    await open();
    await open();
    const third = await Client.open(port);
    clients.push(third);
    await third.waitFor('too many clients');
  });

  it('listens on loopback by default and skips addresses the host lacks', async () => {
    shell = await TelnetShell.listen({
      backend: new FakeBackend(),
      logger,
      version: '1',
      port: 0,
      addresses: ['127.0.0.1', '192.0.2.1'],
    });
    expect(shell.listening.map((l) => l.address)).toEqual(['127.0.0.1']);
    await shell.close();
    shell = await TelnetShell.listen({ backend: new FakeBackend(), logger, version: '1', port: 0 });
    for (const l of shell.listening) expect(['::1', '127.0.0.1']).toContain(l.address);
    await expect(
      TelnetShell.listen({
        backend: new FakeBackend(),
        logger,
        version: '1',
        port: 0,
        addresses: ['192.0.2.1'],
      }),
    ).rejects.toThrow(/cannot listen on any address/);
  });
});
