// Archives written by the real backy 2.1.1 (../shared/fixtures/backy-2.1.1): read, restored, verified
// and continued, never destroyed.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { BIN, backy, tempDir } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('../../../../shared/fixtures/backy-2.1.1/', import.meta.url));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: { path: string; cleanup: () => Promise<void> };
let arch: string;
/** Revision → sha256 of its image, from the fixture's SHA256SUMS (oldest first). */
let sums: [string, string][];
const b = (...args: string[]) => backy(['-b', arch, ...args]);

/** A copy of the fixture's archive at `to`, with `last` and `last.rev` as the symlinks 2.x made. */
async function copyFixture(to: string): Promise<void> {
  await cp(join(FIXTURE, 'archive'), to, { recursive: true });
  spawnSync('chmod', ['-R', 'u+w', to]);
  // shared/ keeps no symlinks: the fixture holds `last` and `last.rev` as files naming their targets.
  // A real backy 2.x archive has them as symlinks; make them so.
  for (const name of ['last', 'last.rev']) {
    const target = (await readFile(join(to, name), 'utf8')).trim();
    await rm(join(to, name));
    await symlink(target, join(to, name));
  }
}

beforeAll(async () => {
  dir = await tempDir();
  arch = join(dir.path, 'web01');
  await copyFixture(arch);
  sums = (await readFile(join(FIXTURE, 'SHA256SUMS'), 'utf8'))
    .split('\n')
    .filter((l) => /^[0-9a-f]{64}\s/.test(l))
    .map((l) => {
      const [hash, id] = l.trim().split(/\s+/);
      return [id!, hash!];
    });
});
afterAll(() => dir?.cleanup());

describe('an archive written by backy 2.1.1', () => {
  it('status lists its three revisions with their tags, sizes and trust', () => {
    const r = b('status', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const revs = JSON.parse(r.stdout) as {
      uuid: string;
      tags: string[];
      size: number;
      trust: string;
      parent: string | null;
      backend_type: string;
    }[];
    expect(revs.map((x) => x.uuid)).toEqual(sums.map(([id]) => id));
    expect(revs.map((x) => x.tags)).toEqual([['daily'], ['weekly', 'daily'], ['daily']]);
    expect(revs.every((x) => x.size === 6 * 1024 * 1024 + 517 && x.trust === 'trusted')).toBe(true);
    expect(revs.map((x) => x.parent)).toEqual([null, sums[0]![0], sums[1]![0]]);
    expect(revs.every((x) => x.backend_type === 'cowfile')).toBe(true);
    const table = b('status');
    expect(table.stdout).toContain(sums[1]![0]);
    expect(table.stdout).toContain('weekly,daily');
    // As the original's status: sizes with two decimals, right-aligned; seconds with one decimal; no
    // separator lines between revisions.
    expect(table.stdout).toMatch(/│ 6\.00 MiB │ +0\.0 s │/);
    expect(table.stdout.split('\n').filter((l) => l.startsWith('├'))).toEqual([]);
    expect(table.stdout).toContain('backy 2.x');
  });

  it('keeps the texts and habits scripts depend on: find, usage without a command, distrust by dates', () => {
    expect(b('find', '-r', 'weekly').stdout.trim()).toBe(join(arch, sums[1]![0]));
    expect(b('find', '--id').stdout.trim()).toBe(sums[2]![0]);
    // What find prints is a revision spec too.
    expect(b('find', '-r', join(arch, sums[0]![0]), '--id').stdout.trim()).toBe(sums[0]![0]);
    const usage = backy([]);
    expect(usage.code).toBe(0);
    expect(usage.stdout).toMatch(/^usage: backy|backy \[-v\]/m);
    const bad = b('distrust', '--from', '2026-13-01');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('distrust --from "2026-13-01": expected a date YYYY-MM-DD');
    expect(b('distrust', '--from', '2030-01-01').stdout).toContain('no revision in that time range');
    expect(
      JSON.parse(b('status', '--json').stdout).every((r: { trust: string }) => r.trust === 'trusted'),
    ).toBe(true);
  });

  it('restores every revision to its checksum, by file and to stdout, and `dd if=last` still works', async () => {
    for (const [id, hash] of sums) {
      const out = join(dir.path, `${id}.restored`);
      const r = b('restore', '-r', id, out);
      expect(r.code, r.stderr).toBe(0);
      expect(sha(await readFile(out))).toBe(hash);
    }
    const stdout = spawnSync(
      process.execPath,
      [
        fileURLToPath(new URL('../bin/backy.js', import.meta.url)),
        '-b',
        arch,
        'restore',
        '-r',
        'weekly',
        '-',
      ],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    expect(stdout.status).toBe(0);
    expect(sha(stdout.stdout)).toBe(sums[1]![1]);
    const dd = spawnSync('dd', [`if=${join(arch, 'last')}`, 'bs=4096k', 'status=none'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(sha(dd.stdout)).toBe(sums[2]![1]);
  });

  it('verifies them', () => {
    const r = b('verify');
    expect(r.code, r.stdout).toBe(0);
    for (const [id] of sums) expect(r.stdout).toContain(`${id}: verified`);
  });

  it('continues the history with a new backup, and keeps every 2.x revision through expire and purge', async () => {
    // The original's config points at /srv/vm/disk.img: point it at an image here, in the same 2.x form.
    const image = join(dir.path, 'disk.img');
    const data = Buffer.alloc(6 * 1024 * 1024 + 517, 7);
    await writeFile(image, data);
    await writeFile(join(arch, 'config'), `filename: ${image}\ntype: file\n`);
    const r = b('backup', 'daily');
    expect(r.code, r.stderr).toBe(0);
    const revs = JSON.parse(b('status', '--json').stdout) as { uuid: string; parent: string | null }[];
    expect(revs).toHaveLength(4);
    expect(revs[3]!.parent).toBe(sums[2]![0]);
    expect(b('expire').code).toBe(0);
    expect(b('purge').code).toBe(0);
    const files = await readdir(arch);
    for (const [id, hash] of sums) {
      expect(files).toContain(id);
      expect(files).toContain(`${id}.rev`);
      const out = join(dir.path, `${id}.after-purge`);
      expect(b('restore', '-r', id, out).code).toBe(0);
      expect(sha(await readFile(out))).toBe(hash);
    }
    const out = join(dir.path, 'new.restored');
    expect(b('restore', out).code).toBe(0);
    expect((await readFile(out)).equals(data)).toBe(true);
  });
});

describe('the scheduler on a backy 2.x base dir', () => {
  it('continues the job (layout images from the central config) and loses no 2.x revision', async () => {
    const base = join(dir.path, 'srv-backy');
    const job = join(base, 'web01');
    await copyFixture(job);
    const image = join(dir.path, 'web01-now.img');
    const data = Buffer.alloc(6 * 1024 * 1024 + 517, 9);
    await writeFile(image, data);
    const conf = join(dir.path, 'backy.conf');
    await writeFile(
      conf,
      stringify({
        global: { 'base-dir': base, 'status-interval': 1, 'telnet-port': 0, layout: 'images' },
        schedules: {
          default: {
            short: { interval: '3s', keep: 2 },
            daily: { interval: '1d', keep: 9 },
            weekly: { interval: '7d', keep: 5 },
          },
        },
        jobs: { web01: { schedule: 'default', source: { type: 'file', filename: image } } },
      }),
    );
    const daemon = spawn(process.execPath, [BIN, 'scheduler', '-c', conf], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    daemon.stderr!.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise((r) => daemon.once('exit', r));
    try {
      const deadline = Date.now() + 60_000;
      let revs: { uuid: string; backend_type: string }[] = [];
      while (Date.now() < deadline) {
        const r = backy(['-b', job, 'status', '--json']);
        if (r.code === 0) revs = JSON.parse(r.stdout);
        if (revs.filter((x) => x.backend_type === 'images').length >= 2) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(revs.filter((x) => x.backend_type === 'images').length, stderr).toBeGreaterThanOrEqual(2);
    } finally {
      daemon.kill('SIGTERM');
      await exited;
    }
    for (const [id, hash] of sums) {
      const out = join(dir.path, `sched-${id}.img`);
      const r = backy(['-b', job, 'restore', '-r', id, out]);
      expect(r.code, r.stderr).toBe(0);
      expect(sha(await readFile(out))).toBe(hash);
    }
    // The seed's restore story: `dd if=last` in the job directory gives the newest image.
    const dd = spawnSync('dd', [`if=${join(job, 'last')}`, 'bs=4096k', 'status=none'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(dd.stdout.equals(data)).toBe(true);
  }, 120_000);
});
