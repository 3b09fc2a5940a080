// Archives written by the real backy 2.1.1 (../shared/fixtures/backy-2.1.1): read, restored, verified
// and continued, never destroyed.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mmh3Hex } from '@backy/core/testing';
import { SYSTEM_PATH_ENV, skipWithout } from '@backy/test-env';
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
    const revs = JSON.parse(r.stdout).revisions as {
      uuid: string;
      tags: string[];
      size: number;
      trust: string;
      parent: string | null;
      backendType: string;
    }[];
    expect(revs.map((x) => x.uuid)).toEqual(sums.map(([id]) => id));
    expect(revs.map((x) => x.tags)).toEqual([['daily'], ['weekly', 'daily'], ['daily']]);
    expect(revs.every((x) => x.size === 6 * 1024 * 1024 + 517 && x.trust === 'trusted')).toBe(true);
    expect(revs.map((x) => x.parent)).toEqual([null, sums[0]![0], sums[1]![0]]);
    expect(revs.every((x) => x.backendType === 'cowfile')).toBe(true);
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
      JSON.parse(b('status', '--json').stdout).revisions.every(
        (r: { trust: string }) => r.trust === 'trusted',
      ),
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

  it.skipIf(skipWithout('nbd-server on backy 2.x', 'nbdcopy') != null)(
    'serves them over NBD to a real client',
    async () => {
      const child = spawn(process.execPath, [BIN, '-b', arch, 'nbd-server', '-p', '0'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      try {
        const port = await new Promise<number>((resolve, reject) => {
          let err = '';
          const timer = setTimeout(() => reject(new Error(`nbd-server did not start: ${err}`)), 15_000);
          child.stderr!.on('data', (d) => {
            err += d;
            const m = /on nbd:\/\/\S+?:(\d+)\//.exec(err);
            if (m) {
              clearTimeout(timer);
              resolve(Number(m[1]));
            }
          });
        });
        for (const [id, hash] of sums) {
          const out = join(dir.path, `nbd-${id}.img`);
          const r = spawnSync('nbdcopy', [`nbd://127.0.0.1:${port}/${id}`, out], { encoding: 'utf8' });
          expect(r.status, r.stderr).toBe(0);
          expect(sha(await readFile(out))).toBe(hash);
        }
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
    },
  );

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
    const revs = JSON.parse(b('status', '--json').stdout).revisions as {
      uuid: string;
      parent: string | null;
    }[];
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

describe('backy upgrade on the 2.1.1 archive', () => {
  it('shows what it would do, converts newest first, verifies, and every revision still restores', async () => {
    const up = join(dir.path, 'upgrade-me');
    await copyFixture(up);
    const u = (...args: string[]) => backy(['-b', up, ...args]);
    const dry = u('upgrade', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout.trim().split('\n')).toEqual(
      [...sums].reverse().map(([id]) => `${id}: would be converted (backy 2.0-2.1 image -> chunked)`),
    );
    expect((await readdir(up)).filter((f) => !f.startsWith('.')).sort()).toEqual(
      (await readdir(join(FIXTURE, 'archive'))).sort(),
    );
    const r = u('upgrade');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${sums[2]![0]}: converted and verified`);
    const revs = JSON.parse(u('status', '--json').stdout).revisions as {
      uuid: string;
      backendType: string;
      tags: string[];
    }[];
    expect(revs.map((x) => [x.uuid, x.backendType])).toEqual(sums.map(([id]) => [id, 'chunked']));
    expect(revs[1]!.tags).toEqual(['weekly', 'daily']);
    const files = await readdir(up);
    for (const [id, hash] of sums) {
      expect(files).not.toContain(id); // the 2.x image went, after the conversion was verified
      const out = join(dir.path, `upgraded-${id}.img`);
      expect(u('restore', '-r', id, out).code).toBe(0);
      expect(sha(await readFile(out))).toBe(hash);
    }
    expect(u('verify').code).toBe(0);
    expect(u('upgrade').stdout).toContain('no backy 2.x revisions to upgrade');
  });

  it('is resumable: killed at any point, the next run finishes and nothing is lost', async () => {
    for (const delay of [120, 250, 400, 600]) {
      const up = join(dir.path, `upgrade-killed-${delay}`);
      await copyFixture(up);
      const child = spawn(process.execPath, [BIN, '-b', up, 'upgrade'], { stdio: 'ignore' });
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(timer);
      const status = backy(['-b', up, 'status']);
      expect(status.code, status.stderr).toBe(0);
      expect(status.stderr).toBe('');
      const again = backy(['-b', up, 'upgrade']);
      expect(again.code, again.stderr).toBe(0);
      for (const [id, hash] of sums) {
        const out = join(dir.path, `killed-${delay}-${id}.img`);
        const r = backy(['-b', up, 'restore', '-r', id, out]);
        expect(r.code, r.stderr).toBe(0);
        expect(sha(await readFile(out))).toBe(hash);
      }
      const revs = JSON.parse(backy(['-b', up, 'status', '--json']).stdout).revisions as {
        backendType: string;
      }[];
      expect(revs.map((x) => x.backendType)).toEqual(['chunked', 'chunked', 'chunked']);
    }
  });

  it('into layout images keeps the 2.x images as the images, so `dd if=last` keeps working', async () => {
    const up = join(dir.path, 'upgrade-images');
    await copyFixture(up);
    await writeFile(
      join(up, 'config'),
      `source:\n  type: file\n  filename: /srv/vm/disk.img\nlayout: images\n`,
    );
    const u = (...args: string[]) => backy(['-b', up, ...args]);
    const r = u('upgrade');
    expect(r.code, r.stderr).toBe(0);
    const revs = JSON.parse(u('status', '--json').stdout).revisions as { backendType: string }[];
    expect(revs.every((x) => x.backendType === 'images')).toBe(true);
    for (const [id, hash] of sums) expect(sha(await readFile(join(up, id)))).toBe(hash);
    const dd = spawnSync('dd', [`if=${join(up, 'last')}`, 'bs=4096k', 'status=none'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(sha(dd.stdout)).toBe(sums[2]![1]);
    expect(u('verify').code).toBe(0);
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
      let revs: { uuid: string; backendType: string }[] = [];
      while (Date.now() < deadline) {
        const r = backy(['-b', job, 'status', '--json']);
        if (r.code === 0) revs = JSON.parse(r.stdout).revisions;
        if (revs.filter((x) => x.backendType === 'images').length >= 2) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(revs.filter((x) => x.backendType === 'images').length, stderr).toBeGreaterThanOrEqual(2);
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

describe.skipIf(skipWithout('backy 2.2-2.5 chunked archives', 'python3') != null)(
  'an archive in the chunked format of backy 2.2–2.5',
  () => {
    const MiB = 1024 * 1024;
    /** Writes the chunk files with python-lzo (what 2.x used) and returns the mapping. */
    function writeChunks(chunks: string, image: Buffer, layout: 'v1' | 'v2'): Record<string, string> {
      const mapping: Record<string, string> = {};
      const script = [
        'import lzo, os, sys',
        'root, layout = sys.argv[1], sys.argv[2]',
        'for line in sys.stdin:',
        '    index, hash, path = line.split()',
        '    d = os.path.join(root, hash[0:2]) if layout == "v2" else os.path.join(root, hash[0:2], hash[2:4])',
        '    os.makedirs(d, exist_ok=True)',
        '    with open(path, "rb") as f: data = f.read()',
        '    with open(os.path.join(d, hash + ".chunk.lzo"), "wb") as f: f.write(lzo.compress(data))',
      ].join('\n');
      let input = '';
      for (let i = 0; i * 4 * MiB < image.length; i++) {
        const chunk = Buffer.alloc(4 * MiB); // 2.x stored whole chunks
        image.copy(chunk, 0, i * 4 * MiB, Math.min(image.length, (i + 1) * 4 * MiB));
        if (chunk.every((b) => b === 0)) continue; // not in the mapping: zeros
        const hash = mmh3Hex(chunk);
        mapping[String(i)] = hash;
        const tmp = join(dir.path, `chunk-${hash}`);
        writeFileSync(tmp, chunk);
        input += `${i} ${hash} ${tmp}\n`;
      }
      const r = spawnSync('python3', ['-c', script, chunks, layout], {
        input,
        env: SYSTEM_PATH_ENV,
        encoding: 'utf8',
      });
      if (r.status !== 0) throw new Error(r.stderr);
      return mapping;
    }

    it('lists, restores and verifies its revisions (v1 and v2 stores), continues it, and purge keeps its files', async () => {
      const legacy = join(dir.path, 'chunked2');
      const chunks = join(legacy, 'chunks');
      mkdirSync(chunks, { recursive: true });
      const images = [
        Buffer.concat([randomBytes(5 * MiB), Buffer.alloc(4 * MiB), randomBytes(1234)]),
        Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(6 * MiB), randomBytes(1234)]),
      ];
      const ids = ['Chunked2Rev00000000001', 'Chunked2Rev00000000002'];
      const layouts = ['v1', 'v2'] as const;
      ids.forEach((id, i) => {
        const mapping = writeChunks(chunks, images[i]!, layouts[i]!);
        writeFileSync(join(legacy, id), JSON.stringify({ mapping, size: images[i]!.length }));
        writeFileSync(
          join(legacy, `${id}.rev`),
          `backend_type: chunked\nparent: ${i === 0 ? "''" : ids[0]}\nstats:\n  bytes_written: ${images[i]!.length}\n  duration: 12.5\ntags:\n- daily\ntimestamp: 2026-11-0${i + 1} 10:00:00.123456+00:00\ntrust: trusted\nuuid: ${id}\n`,
        );
      });
      writeFileSync(join(chunks, 'store'), 'v2');
      const source = join(dir.path, 'chunked2.img');
      writeFileSync(source, images[1]!);
      writeFileSync(join(legacy, 'config'), `filename: ${source}\ntype: file\n`);
      const c = (...args: string[]) => backy(['-b', legacy, ...args]);
      const status = JSON.parse(c('status', '--json').stdout).revisions as {
        uuid: string;
        backendType: string;
        size: number;
      }[];
      expect(status.map((r) => [r.uuid, r.backendType, r.size])).toEqual(
        ids.map((id, i) => [id, 'legacy-chunked', images[i]!.length]),
      );
      for (const [i, id] of ids.entries()) {
        const out = join(dir.path, `${id}.img`);
        const r = c('restore', '-r', id, out);
        expect(r.code, r.stderr).toBe(0);
        expect((await readFile(out)).equals(images[i]!)).toBe(true);
      }
      expect(c('verify').code).toBe(0);
      expect(c('backup', 'daily').code).toBe(0);
      expect(c('purge').code).toBe(0);
      const lzoFiles = spawnSync('find', [chunks, '-name', '*.chunk.lzo'], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n');
      expect(lzoFiles.length).toBeGreaterThanOrEqual(3);
      for (const [i, id] of ids.entries()) {
        const out = join(dir.path, `${id}.again.img`);
        expect(c('restore', '-r', id, out).code).toBe(0);
        expect((await readFile(out)).equals(images[i]!)).toBe(true);
      }
      // A damaged 2.x chunk is found by verify, named, and distrusts only its revision.
      const first = (
        JSON.parse(readFileSync(join(legacy, ids[1]!), 'utf8')) as { mapping: Record<string, string> }
      ).mapping['0']!;
      const victim = join(chunks, first.slice(0, 2), `${first}.chunk.lzo`); // the v2 store's place
      const bytes = readFileSync(victim);
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
      writeFileSync(victim, bytes);
      const v = c('verify', '-r', ids[1]!);
      expect(v.code).toBe(1);
      expect(v.stdout).toContain(`${ids[1]}: DAMAGED, 1 chunk`);
      // upgrade refuses to convert what it cannot read, and changes nothing of that revision.
      // Into layout images, 2.2–2.5 revisions are refused with one line, and nothing changes.
      const legacyConfig = readFileSync(join(legacy, 'config'), 'utf8');
      writeFileSync(join(legacy, 'config'), `source: {type: file, filename: ${source}}\nlayout: images\n`);
      const refused = c('upgrade');
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(
        /^backy: error: upgrade: revision \w+ is in backy 2\.2–2\.5's chunked format, which converts into layout "chunked" only/,
      );
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      writeFileSync(join(legacy, 'config'), legacyConfig);
      const failed = c('upgrade');
      expect(failed.code).not.toBe(0);
      writeFileSync(victim, Buffer.from(bytes.map((x, k) => (k === bytes.length - 1 ? x ^ 0xff : x))));
      const up = c('upgrade');
      expect(up.code, up.stderr).toBe(0);
      expect(up.stdout).toMatch(/removed \d+ backy 2\.x chunk files no revision uses/);
      expect(spawnSync('find', [chunks, '-name', '*.chunk.lzo'], { encoding: 'utf8' }).stdout.trim()).toBe(
        '',
      );
      for (const [i, id] of ids.entries()) {
        const out = join(dir.path, `${id}.upgraded.img`);
        expect(c('restore', '-r', id, out).code).toBe(0);
        expect((await readFile(out)).equals(images[i]!)).toBe(true);
      }
    });
  },
);
