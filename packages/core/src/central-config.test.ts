import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  centralConfigSchema,
  copyTargetOf,
  loadCentralConfig,
  parseCentralConfig,
} from './central-config.js';

// Written the way configs for backy 2.x look: same sections and key names.
const PYTHON_STYLE = `
global:
    base-dir: /srv/backy
    worker-limit: 3
    status-interval: 30
    telnet-port: 6023
    backup-completed-callback: /usr/local/bin/backy-done
schedules:
    default:
        daily:
            interval: 1d
            keep: 9
        weekly:
            interval: 7d
            keep: 5
jobs:
    host1:
        source:
            type: ceph-rbd
            pool: rbd
            image: host1
        schedule: default
    host2.example.com:
        source:
            type: file
            filename: /srv/images/host2.img
        schedule: default
    vm3:
        source:
            type: flyingcircus
            pool: rbd.hdd
            image: vm3.root
            vm: vm3
            consul_acl_token: secret
        schedule: default
`;

function problem(raw: unknown): string {
  try {
    parseCentralConfig(raw, 'backy.conf');
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('config was accepted');
}

describe('central config', () => {
  it('loads a backy 2.x style config unchanged, with defaults filled in', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-conf-'));
    await writeFile(join(dir, 'backy.conf'), PYTHON_STYLE);
    const loaded = await loadCentralConfig(join(dir, 'backy.conf'));
    expect(loaded.config.global).toEqual({
      'base-dir': '/srv/backy',
      'worker-limit': 3,
      'status-interval': 30,
      'telnet-addrs': ['::1', '127.0.0.1'],
      'telnet-port': 6023,
      'backup-completed-callback': '/usr/local/bin/backy-done',
    });
    expect(loaded.statusFile).toBe('/srv/backy/status');
    expect(loaded.config.schedules.default).toEqual({
      daily: { interval: 86400, keep: 9 },
      weekly: { interval: 604800, keep: 5 },
    });
    expect(Object.keys(loaded.config.jobs)).toEqual(['host1', 'host2.example.com', 'vm3']);
    expect(loaded.config.jobs.vm3!.source).toEqual({
      type: 'flyingcircus',
      pool: 'rbd.hdd',
      image: 'vm3.root',
      vm: 'vm3',
      consul_acl_token: 'secret',
    });
    // The raw values keep durations as written, for the archive config the daemon writes.
    expect(
      (loaded.raw as { schedules: { default: { daily: { interval: unknown } } } }).schedules.default.daily
        .interval,
    ).toBe('1d');
  });

  it('takes the telnet shell socket, group, token file and 2.x switch, and refuses a relative socket path', () => {
    const ok = centralConfigSchema.safeParse({
      global: {
        'telnet-socket': '/run/backy/shell.sock',
        'telnet-socket-group': 'backup',
        'telnet-token-file': '/etc/backy/shell.token',
        'telnet-insecure-tcp': true,
      },
    });
    expect(ok.success).toBe(true);
    expect(centralConfigSchema.safeParse({ global: { 'telnet-socket': false } }).success).toBe(true);
    const relative = centralConfigSchema.safeParse({ global: { 'telnet-socket': 'shell.sock' } });
    expect(relative.success).toBe(false);
    expect(relative.error!.issues[0]!.path).toEqual(['global', 'telnet-socket']);
  });

  it('accepts telnet-addrs as a comma-separated string or a list, and durations for status-interval', () => {
    const a = parseCentralConfig(
      { global: { 'telnet-addrs': '127.0.0.1 , ::1', 'status-interval': '2m' } },
      'x',
    );
    expect(a.config.global['telnet-addrs']).toEqual(['127.0.0.1', '::1']);
    expect(a.config.global['status-interval']).toBe(120);
    const b = parseCentralConfig(
      { global: { 'telnet-addrs': ['::1'], 'status-file': '/run/backy.status' } },
      'x',
    );
    expect(b.config.global['telnet-addrs']).toEqual(['::1']);
    expect(b.statusFile).toBe('/run/backy.status');
  });

  it('defaults everything for an empty file', () => {
    const loaded = parseCentralConfig(null, 'x');
    expect(loaded.config.global['base-dir']).toBe('/srv/backy');
    expect(loaded.config.global['worker-limit']).toBe(1);
    expect(loaded.config.jobs).toEqual({});
  });

  it('reports unknown keys by name, with their path', () => {
    expect(problem({ global: { 'worker-limt': 2 } })).toBe('backy.conf: global: unknown key "worker-limt"');
    expect(problem({ jobs2: {} })).toBe('backy.conf: unknown key "jobs2"');
    const conf = parse(PYTHON_STYLE);
    conf.jobs.host1.retain = 3;
    expect(problem(conf)).toBe('backy.conf: jobs.host1: unknown key "retain"');
    conf.jobs.host1.retain = undefined;
    delete conf.jobs.host1.retain;
    conf.schedules.default.daily.keeep = 1;
    expect(problem(conf)).toBe('backy.conf: schedules.default.daily: unknown key "keeep"');
  });

  it('names the key path of invalid values', () => {
    expect(problem({ global: { 'worker-limit': 0 } })).toMatch(/^backy\.conf: global\.worker-limit: /);
    expect(problem({ schedules: { s: { daily: { interval: 'often', keep: 1 } } } })).toMatch(
      /^backy\.conf: schedules\.s\.daily\.interval: invalid duration "often"/,
    );
    expect(problem({ jobs: { a: { schedule: 'nope', source: { type: 'file' } } } })).toBe(
      'backy.conf: jobs.a.schedule: unknown schedule "nope" (no schedules defined)',
    );
    expect(
      problem({ jobs: { a: { schedule: 's' } }, schedules: { s: { d: { interval: 1, keep: 1 } } } }),
    ).toBe('backy.conf: jobs.a.source: required');
    expect(problem({ schedules: { s: {} } })).toBe(
      'backy.conf: schedules.s: a schedule needs at least one tag',
    );
  });

  it('rejects job names that are not a safe single path component', () => {
    const schedules = { s: { daily: { interval: '1d', keep: 1 } } };
    const job = { schedule: 's', source: { type: 'file', filename: '/x' } };
    for (const bad of ['..', '.', '.hidden', 'a/b', '../etc', '-rf', 'a b', 'a\nb', '', 'x'.repeat(201)]) {
      expect(
        problem({ schedules, jobs: { [bad]: job } }).startsWith(
          `backy.conf: jobs: invalid job name ${JSON.stringify(bad)}: job names `,
        ),
        bad,
      ).toBe(true);
    }
    expect(problem({ schedules, jobs: { status: job } })).toBe(
      'backy.conf: jobs.status: job name clashes with the status file in base-dir',
    );
    for (const good of ['web01', 'host2.example.com', 'vm_3', 'db-1', 'user@host', '0day']) {
      expect(parseCentralConfig({ schedules, jobs: { [good]: job } }, 'x').config.jobs[good]).toBeDefined();
    }
  });

  it("names each job's copy target: its own copy-to, else {global.copy-to}/{job}, false for none", () => {
    const schedules = { s: { daily: { interval: '1d', keep: 1 } } };
    const job = { schedule: 's', source: { type: 'file', filename: '/x' } };
    const jobs = {
      plain: job,
      own: { ...job, 'copy-to': '/mnt/elsewhere/own' },
      none: { ...job, 'copy-to': false },
    };
    const withGlobal = parseCentralConfig({ global: { 'copy-to': '/mnt/offsite' }, schedules, jobs }, 'x');
    expect(['plain', 'own', 'none', 'unknown'].map((n) => copyTargetOf(withGlobal.config, n))).toEqual([
      '/mnt/offsite/plain',
      '/mnt/elsewhere/own',
      null,
      '/mnt/offsite/unknown',
    ]);
    const withoutGlobal = parseCentralConfig({ schedules, jobs }, 'x');
    expect(['plain', 'own', 'none'].map((n) => copyTargetOf(withoutGlobal.config, n))).toEqual([
      null,
      '/mnt/elsewhere/own',
      null,
    ]);
    expect(problem({ schedules, jobs: { a: { ...job, 'copy-to': 'relative/dir' } } })).toBe(
      'backy.conf: jobs.a.copy-to: must be an absolute path',
    );
  });
});

describe('hostile central configs', () => {
  const write = async (text: string) => {
    const dir = await mkdtemp(join(tmpdir(), 'backy-conf-'));
    const path = join(dir, 'backy.conf');
    await writeFile(path, text);
    return path;
  };
  const jobsYaml = (n: number) => {
    const lines = ['schedules:', '  default:', '    daily: {interval: 1d, keep: 9}', 'jobs:'];
    for (let i = 0; i < n; i++)
      lines.push(`  vm${i}.example.com:`, '    schedule: default', '    source: {type: file, filename: /x}');
    return `${lines.join('\n')}\n`;
  };

  it('an alias bomb is a config error naming the file', async () => {
    const path = await write(
      [
        'a: &a [x, x, x, x, x, x, x, x, x]',
        'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]',
        'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]',
        'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]',
      ].join('\n'),
    );
    await expect(loadCentralConfig(path)).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(new RegExp(`^${path}: invalid YAML: Excessive alias count`)),
    });
  });

  it('still refuses duplicate keys, naming the key and its line', async () => {
    const path = await write(`${jobsYaml(3)}  vm1.example.com:\n    schedule: default\n`);
    await expect(loadCentralConfig(path)).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: `${path}:14: invalid YAML: Map keys must be unique ("vm1.example.com" repeats)`,
    });
  });

  it('an oversized file is refused with a message, not parsed', async () => {
    const path = await write('');
    const { truncate } = await import('node:fs/promises');
    await truncate(path, 65 * 1024 * 1024);
    await expect(loadCentralConfig(path)).rejects.toThrow(
      `${path}: 65 MiB is larger than a config may be (64 MiB)`,
    );
  });

  it('load time grows linearly with the number of jobs', async () => {
    // yaml's own duplicate-key check compared every key with every other: 5k jobs 0.8 s, 40k 13.4 s.
    const time = async (n: number) => {
      const path = await write(jobsYaml(n));
      let best = Number.POSITIVE_INFINITY;
      for (let i = 0; i < 2; i++) {
        const started = performance.now();
        expect(Object.keys((await loadCentralConfig(path)).config.jobs)).toHaveLength(n);
        best = Math.min(best, performance.now() - started);
      }
      return best;
    };
    const small = await time(2000);
    const large = await time(16_000);
    // 8× the jobs: about 8× the time when linear, some 20× when quadratic.
    expect(large / small).toBeLessThan(14);
  }, 120_000);
});
