// Archives written by the real backy 2.1.1 (../shared/fixtures/backy-2.1.1): read, restored, verified
// and continued, never destroyed.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cp, lstat, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MiB, mmh3Hex } from '@backy/core/testing';
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

/**
 * A copy of the fixture's archive (`from`, default the shared fixture) at `to`, with `last` and
 * `last.rev` as the symlinks 2.x made. The fixture may hold them as small files naming their targets
 * (shared/ keeps no symlinks) or as real symlinks (a plain `cp -r` of it); 2.x's own links were absolute,
 * so only the target's name is kept.
 */
async function copyFixture(to: string, from = join(FIXTURE, 'archive')): Promise<void> {
  await cp(from, to, { recursive: true, verbatimSymlinks: true });
  spawnSync('chmod', ['-R', 'u+w', to]);
  for (const name of ['last', 'last.rev']) {
    const path = join(to, name);
    const target = basename(
      (await lstat(path)).isSymbolicLink() ? await readlink(path) : (await readFile(path, 'utf8')).trim(),
    );
    await rm(path);
    await symlink(target, path);
  }
}

/** Names the layout in the 2.x archive config at `archive` (which 2.x wrote as the bare source mapping). */
async function setLayout(archive: string, layout: 'chunked' | 'images'): Promise<void> {
  const source = (await readFile(join(archive, 'config'), 'utf8')).replace(/^/gm, '  ').trimEnd();
  await writeFile(join(archive, 'config'), `source:\n${source}\nlayout: ${layout}\n`);
}

/** The warning for a 2.x archive whose config has no schedule. */
const UNSCHEDULED =
  /has no schedule \(backy 2\.x kept it in the central config\): backup accepts any tag and expire removes nothing/;

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
    // Its 2.x config has no schedule: said once, and nothing else.
    expect(r.stderr.trim().split('\n')).toEqual([
      `backy: warning: ${join(arch, 'config')} has no schedule (backy 2.x kept it in the central config): backup accepts any tag and expire removes nothing; add \`schedule: {TAG: {interval, keep}}\` to it, or run the job from the scheduler`,
    ]);
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
      const child = spawn(process.execPath, [BIN, '-b', arch, 'nbd-server', '-p', '0', '--insecure-tcp'], {
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

  it('goes on in layout images when its config names no layout, so `dd if=last` gives the newest backup', async () => {
    const cont = join(dir.path, 'continue-images');
    await copyFixture(cont);
    const image = join(dir.path, 'continue-images.img');
    const data = Buffer.alloc(6 * 1024 * 1024 + 517, 5);
    await writeFile(image, data);
    // The config as backy 2.x wrote it: the bare source mapping, no layout.
    await writeFile(join(cont, 'config'), `filename: ${image}\ntype: file\n`);
    const c = (...args: string[]) => backy(['-b', cont, ...args]);
    const r = c('backup', 'daily');
    expect(r.code, r.stderr).toBe(0);
    const revs = JSON.parse(c('status', '--json').stdout).revisions as {
      uuid: string;
      backendType: string;
    }[];
    expect(revs.map((x) => x.backendType)).toEqual(['cowfile', 'cowfile', 'cowfile', 'images']);
    expect(await readlink(join(cont, 'last'))).toBe(revs[3]!.uuid);
    expect(await readlink(join(cont, 'last.rev'))).toBe(`${revs[3]!.uuid}.rev`);
    const dd = spawnSync('dd', [`if=${join(cont, 'last')}`, 'bs=4096k', 'status=none'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(dd.stdout.equals(data)).toBe(true);
    // Chosen explicitly, layout chunked stores the next backup in the chunk store, and `last` goes
    // rather than name an older image.
    await writeFile(join(cont, 'config'), `source:\n  type: file\n  filename: ${image}\nlayout: chunked\n`);
    expect(c('backup', 'daily').code).toBe(0);
    const after = JSON.parse(c('status', '--json').stdout).revisions as { backendType: string }[];
    expect(after.at(-1)!.backendType).toBe('chunked');
    expect(await lstat(join(cont, 'last')).catch(() => null)).toBeNull();
  });

  it('says that its config has no schedule in status, backup and expire, until it has one', async () => {
    const plain = join(dir.path, 'no-schedule');
    await copyFixture(plain);
    const image = join(dir.path, 'no-schedule.img');
    await writeFile(image, Buffer.alloc(6 * 1024 * 1024 + 517, 3));
    await writeFile(join(plain, 'config'), `filename: ${image}\ntype: file\n`);
    const p = (...args: string[]) => backy(['-b', plain, ...args]);
    for (const args of [['status'], ['backup', 'anything'], ['expire']]) {
      const r = p(...args);
      expect(r.code, r.stderr).toBe(0);
      expect(
        r.stderr.split('\n').filter((l) => UNSCHEDULED.test(l)),
        args.join(' '),
      ).toHaveLength(1);
    }
    await writeFile(
      join(plain, 'config'),
      `source: {type: file, filename: ${image}}\nschedule: {daily: {interval: 1d, keep: 9}}\n`,
    );
    const r = p('status');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
  });
});

describe('backy upgrade on the 2.1.1 archive', () => {
  it('shows what it would do, converts newest first, verifies, and every revision still restores', async () => {
    const up = join(dir.path, 'upgrade-me');
    await copyFixture(up);
    // Without a layout, an archive whose newest revision is a 2.0–2.1 image stays in layout images.
    await setLayout(up, 'chunked');
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

  it('keeps a distrusted revision as backy 2.x left it, with its image, and says so', async () => {
    const up = join(dir.path, 'upgrade-distrusted');
    await copyFixture(up);
    await setLayout(up, 'chunked');
    const u = (...args: string[]) => backy(['-b', up, ...args]);
    const [doubtful, doubtfulHash] = sums[0]!;
    expect(u('distrust', '-r', doubtful).code).toBe(0);
    const line = `${doubtful}: distrusted, not converted: its backy 2.x files are kept`;
    const dry = u('upgrade', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`${doubtful}: distrusted, would not be converted`);
    const r = u('upgrade');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(line);
    expect(r.stdout).toContain(`${sums[1]![0]}: converted and verified`);
    const revs = JSON.parse(u('status', '--json').stdout).revisions as {
      uuid: string;
      backendType: string;
      trust: string;
    }[];
    expect(revs.map((x) => [x.uuid, x.backendType])).toEqual([
      [doubtful, 'cowfile'],
      [sums[1]![0], 'chunked'],
      [sums[2]![0], 'chunked'],
    ]);
    expect(revs[0]!.trust).toBe('distrusted');
    expect(sha(await readFile(join(up, doubtful)))).toBe(doubtfulHash);
    expect(await readFile(join(up, `${doubtful}.rev`), 'utf8')).toMatch(/^trust: distrusted$/m);
    // Each run says it again until the operator decides.
    expect(u('upgrade').stdout).toContain(line);
  });

  it('is resumable: killed at any point, the next run finishes and nothing is lost', async () => {
    for (const delay of [120, 250, 400, 600]) {
      const up = join(dir.path, `upgrade-killed-${delay}`);
      await copyFixture(up);
      await setLayout(up, 'chunked');
      const child = spawn(process.execPath, [BIN, '-b', up, 'upgrade'], { stdio: 'ignore' });
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(timer);
      const status = backy(['-b', up, 'status']);
      expect(status.code, status.stderr).toBe(0);
      expect(status.stderr.split('\n').filter((l) => l !== '' && !UNSCHEDULED.test(l))).toEqual([]);
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

describe('the fixture, however shared/ holds `last` and `last.rev`', () => {
  it('is copied as 2.x left it both from small files naming the targets and from real symlinks', async () => {
    const newest = sums[2]![0];
    for (const form of ['files', 'symlinks'] as const) {
      // A copy of shared/'s fixture in each form: as stored (files), and as a plain `cp -r` of a
      // checkout that holds symlinks (2.x's links were absolute).
      const source = join(dir.path, `fixture-${form}`);
      await cp(join(FIXTURE, 'archive'), source, { recursive: true });
      spawnSync('chmod', ['-R', 'u+w', source]);
      for (const name of ['last', 'last.rev']) {
        const target = name === 'last' ? newest : `${newest}.rev`;
        await rm(join(source, name));
        if (form === 'files') await writeFile(join(source, name), `${target}\n`);
        else await symlink(join('/srv/backy/web01', target), join(source, name));
      }
      const to = join(dir.path, `copied-from-${form}`);
      await copyFixture(to, source);
      expect(await readlink(join(to, 'last'))).toBe(newest);
      expect(await readlink(join(to, 'last.rev'))).toBe(`${newest}.rev`);
      const dd = spawnSync('dd', [`if=${join(to, 'last')}`, 'bs=4096k', 'status=none'], {
        maxBuffer: 64 * 1024 * 1024,
      });
      expect(sha(dd.stdout)).toBe(sums[2]![1]);
    }
  });
});

/** The top-level entries of a `.rev` as PyYAML wrote them: each `key:` line with its indented lines. */
const revEntries = (text: string): string[] => text.split(/^(?=\w)/m).filter((e) => e.trim() !== '');

/**
 * Loads `.rev` files as backy 2.x's `Revision.load` does: PyYAML's `safe_load`, a UTC timestamp (2.x
 * asserts it), `parent` present, `trust` one of 2.x's three, no `backend_type` but 2.0–2.1's.
 */
const LOAD_AS_BACKY2 = `
import datetime, json, sys, yaml
out = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        m = yaml.safe_load(f)
    assert m["timestamp"].tzinfo == datetime.timezone.utc, path
    parent = m["parent"]
    assert isinstance(m.get("stats", {}), dict), path
    tags = set(m.get("tags", []))
    assert all(isinstance(t, str) for t in tags), path
    trust = m.get("trust", "trusted")
    assert trust in ("trusted", "distrusted", "verified"), path
    assert m.get("backend_type", "cowfile") == "cowfile", path
    out[m["uuid"]] = {"timestamp": m["timestamp"].isoformat(), "parent": parent, "tags": sorted(tags),
                      "trust": trust, "stats": m["stats"]}
print(json.dumps(out))
`;
const PYYAML =
  spawnSync('python3', ['-c', 'import yaml'], { env: SYSTEM_PATH_ENV, stdio: 'ignore' }).status === 0;
if (!PYYAML) console.warn('[backy 2.x reading the .rev files] skipped: python3 with PyYAML is not installed');

describe('a 2.x archive stays readable by backy 2.x until `backy upgrade`', () => {
  const keep = () => join(dir.path, 'keep-2x');
  const before = new Map<string, string>();
  const SIZE = 6 * 1024 * 1024 + 517;

  it('verify, distrust and tags record trust and tags in 2.x .rev files, keeping every field and digit', async () => {
    await copyFixture(keep());
    const k = (...args: string[]) => backy(['-b', keep(), ...args]);
    for (const [id] of sums) before.set(id, await readFile(join(keep(), `${id}.rev`), 'utf8'));
    const v = k('verify');
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const d = k('distrust', '-r', sums[0]![0]);
    expect(d.code, d.stderr).toBe(0);
    // `yes` is a boolean to YAML 1.1 (PyYAML): it must stay a string tag for 2.x.
    const t = k('tags', 'add', '-r', sums[1]![0], 'monthly,yes');
    expect(t.code, t.stderr).toBe(0);
    const revs = JSON.parse(k('status', '--json').stdout).revisions as {
      uuid: string;
      trust: string;
      tags: string[];
      size: number;
      backendType: string;
      timestamp: string;
    }[];
    expect(revs.map((r) => [r.uuid, r.trust, r.tags, r.size, r.backendType])).toEqual([
      [sums[0]![0], 'distrusted', ['daily'], SIZE, 'cowfile'],
      [sums[1]![0], 'verified', ['weekly', 'daily', 'monthly', 'yes'], SIZE, 'cowfile'],
      [sums[2]![0], 'verified', ['daily'], SIZE, 'cowfile'],
    ]);
    for (const [id] of sums) {
      const text = await readFile(join(keep(), `${id}.rev`), 'utf8');
      // What 2.x wrote is there byte for byte (the timestamp with its microseconds, the float
      // durations), but the tags where they changed; nothing of backy's own format was added.
      for (const entry of revEntries(before.get(id)!)) {
        if (id === sums[1]![0] && entry.startsWith('tags:')) continue;
        expect(text).toContain(entry);
      }
      expect(text).toMatch(/^timestamp: 2026-12-01 09:56:\d\d\.\d{6}\+00:00$/m);
      expect(revEntries(text).map((e) => e.split(':')[0])).toEqual([
        'parent',
        'stats',
        'tags',
        'timestamp',
        'trust',
        'uuid',
      ]);
    }
    // The whole archive still restores, and verify of 2.x revisions again changes nothing more.
    const again = k('verify', '-r', sums[2]![0]);
    expect(again.code).toBe(0);
    expect(await readFile(join(keep(), `${sums[2]![0]}.rev`), 'utf8')).toBe(
      `${before.get(sums[2]![0])!.replace(/^uuid:/m, 'trust: verified\nuuid:')}`,
    );
  });

  it.skipIf(!PYYAML)("and backy 2.x's loader (PyYAML) reads them, with the new trust and tags", () => {
    const files = sums.map(([id]) => join(keep(), `${id}.rev`));
    const r = spawnSync('python3', ['-c', LOAD_AS_BACKY2, ...files], {
      env: SYSTEM_PATH_ENV,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const loaded = JSON.parse(r.stdout) as Record<
      string,
      { timestamp: string; parent: string | null; tags: string[]; trust: string; stats: unknown }
    >;
    const original = JSON.parse(
      spawnSync(
        'python3',
        ['-c', LOAD_AS_BACKY2, ...sums.map(([id]) => join(FIXTURE, 'archive', `${id}.rev`))],
        {
          env: SYSTEM_PATH_ENV,
          encoding: 'utf8',
        },
      ).stdout,
    ) as typeof loaded;
    for (const [id] of sums) {
      expect(loaded[id]!.timestamp).toBe(original[id]!.timestamp);
      expect(loaded[id]!.timestamp).toMatch(/\.\d{6}\+00:00$/);
      expect(loaded[id]!.parent).toBe(original[id]!.parent);
      expect(loaded[id]!.stats).toEqual(original[id]!.stats);
    }
    expect(Object.values(loaded).map((x) => [x.trust, x.tags])).toEqual([
      ['distrusted', ['daily']],
      ['verified', ['daily', 'monthly', 'weekly', 'yes']],
      ['verified', ['daily']],
    ]);
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
      // Its `<id>` is a chunk mapping, not an image: find says so and prints the ID.
      const found = c('find', '-r', ids[0]!);
      expect([found.stdout, found.stderr]).toEqual([
        `${ids[0]}\n`,
        `backy: warning: revision ${ids[0]} has no image file (its data is in chunks); printing its ID\n`,
      ]);
      expect(JSON.parse(c('find', '-r', ids[0]!, '--json').stdout)).toMatchObject({
        revision: ids[0],
        image: null,
      });
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
      // upgrade refuses to convert what it cannot read, and changes nothing of that revision.
      const failed = c('upgrade');
      expect(failed.code).not.toBe(0);
      const v = c('verify', '-r', ids[1]!);
      expect(v.code).toBe(1);
      expect(v.stdout).toContain(`${ids[1]}: DAMAGED, 1 chunk`);
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
      // Distrusted now, it is not converted: a line says so, and its mapping and chunks stay.
      const skipped = c('upgrade');
      expect(skipped.code, skipped.stderr).toBe(0);
      expect(skipped.stdout).toContain(`${ids[1]}: distrusted, not converted`);
      expect(readFileSync(join(legacy, ids[1]!), 'utf8')).toContain('"mapping"');
      expect(readFileSync(victim).equals(bytes)).toBe(true);
      writeFileSync(victim, Buffer.from(bytes.map((x, k) => (k === bytes.length - 1 ? x ^ 0xff : x))));
      expect(c('verify', '-r', ids[1]!).code).toBe(0);
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
