// Never silently wrong (issue 24): retention and the registry of a shared store, paths in a config,
// sources that change size or become empty, and values a config or argument must not get away with.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { backy, oneLineError, tempDir } from './helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.cleanup());

type Config = { source: Record<string, unknown>; schedule?: unknown; store?: unknown };

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A new archive `name` of a file source, its config changed by `edit`. */
async function archive(name: string, image: string, edit: (config: Config) => void = () => {}) {
  const arch = join(dir.path, name);
  const init = backy(['-b', arch, 'init', 'file', image]);
  expect(init.code, init.stderr).toBe(0);
  const config = parse(await readFile(join(arch, 'config'), 'utf8')) as Config;
  edit(config);
  await writeFile(join(arch, 'config'), stringify(config));
  return { arch, b: (...args: string[]) => backy(['-b', arch, ...args]) };
}

const ids = (b: (...args: string[]) => { stdout: string }) =>
  (JSON.parse(b('status', '--json').stdout).revisions as { uuid: string }[]).map((r) => r.uuid);

async function chunkFiles(store: string): Promise<number> {
  let n = 0;
  for (const fan of await readdir(store))
    if (/^[0-9a-f]{2}$/.test(fan)) n += (await readdir(join(store, fan))).length;
  return n;
}

describe('keep: 0', () => {
  it('never expires the tag (backy 2.x meaning): backup daily twice, expire keeps both', async () => {
    const image = join(dir.path, 'keep0.img');
    await writeFile(image, randomBytes(2 * MiB));
    const { b } = await archive('keep0', image, (c) => {
      c.schedule = { daily: { interval: '1s', keep: 0 } };
    });
    expect(b('backup', 'daily').code).toBe(0);
    await writeFile(image, randomBytes(2 * MiB));
    expect(b('backup', 'daily').code).toBe(0);
    await new Promise((r) => setTimeout(r, 1100)); // both are older than keep × interval, too
    const expire = b('expire');
    expect(expire.code, expire.stderr).toBe(0);
    expect(ids(b)).toHaveLength(2);
  });
});

describe('calendar retention', () => {
  it('expire --dry-run names the rule keeping each revision; expire removes the rest, never the newest verified one', async () => {
    const image = join(dir.path, 'calendar.img');
    await writeFile(image, randomBytes(2 * MiB));
    const { b } = await archive('calendar', image, (c) => {
      c.schedule = { daily: { interval: '1d', keep: 9 } };
      (c as Record<string, unknown>).retention = { 'keep-last': 1 };
    });
    for (let i = 0; i < 3; i++) {
      await writeFile(image, randomBytes(2 * MiB));
      expect(b('backup', 'daily').code).toBe(0);
    }
    const [oldest, middle, newest] = ids(b);
    expect(b('verify', '-r', oldest!).code).toBe(0);
    const dry = b('expire', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout.trim().split('\n')).toEqual([
      `${newest}: kept (last)`,
      `${middle}: would be removed`,
      `${oldest}: kept (newest-verified)`,
    ]);
    expect(ids(b)).toEqual([oldest, middle, newest]);
    const done = b('expire');
    expect(done.stdout).toBe(`${middle}: removed\n`);
    expect(ids(b)).toEqual([oldest, newest]);
    expect(b('expire').stdout).toBe('nothing to expire\n');
  });

  it('a retention the config gets wrong is one line naming the key', async () => {
    const image = join(dir.path, 'calendar-bad.img');
    await writeFile(image, randomBytes(MiB));
    const { arch, b } = await archive('calendar-bad', image, (c) => {
      (c as Record<string, unknown>).retention = { 'keep-daily': 7, timezone: 'Mars/Olympus' };
    });
    const r = b('expire');
    expect(r.code).not.toBe(0);
    expect(oneLineError(r)).toBe(
      `backy: error: ${join(arch, 'config')}: retention.timezone: unknown time zone (an IANA name such as Europe/Berlin, or UTC)`,
    );
  });
});

describe('purge with a shared store', () => {
  it("refuses when another archive's registry entry is empty, deletes nothing, and both still restore", async () => {
    const store = join(dir.path, 'shared');
    const common = randomBytes(4 * MiB);
    const made = [];
    for (const name of ['sA', 'sB']) {
      const image = join(dir.path, `${name}.img`);
      const data = Buffer.concat([common, randomBytes(4 * MiB)]);
      await writeFile(image, data);
      const a = await archive(name, image, (c) => {
        c.store = { path: store };
      });
      expect(a.b('backup', 'manual:one').code).toBe(0);
      made.push({ ...a, data });
    }
    const [sA, sB] = made as [(typeof made)[0], (typeof made)[0]];
    // sB forgets a revision, so that purge would have something of its own to delete.
    await writeFile(join(dir.path, 'sB.img'), randomBytes(3 * MiB));
    expect(sB.b('backup', 'manual:two').code).toBe(0);
    expect(sB.b('forget', '-r', 'last').code).toBe(0);
    const id = (await readFile(join(sA.arch, 'archive-id'), 'utf8')).trim();
    const entry = (await readdir(join(store, '.archives'))).find((n) => n.startsWith(`${id}.`))!;
    await writeFile(join(store, '.archives', entry), '');
    const before = await chunkFiles(store);
    const purge = sB.b('purge');
    expect(purge.code).not.toBe(0);
    expect(oneLineError(purge)).toContain(
      `purge stopped, nothing deleted: registry entry ${join(store, '.archives', entry)} is empty`,
    );
    expect(await chunkFiles(store)).toBe(before);
    for (const { arch, data } of [sA, sB]) {
      const out = join(dir.path, 'restored.img');
      const r = backy([
        '-b',
        arch,
        'restore',
        '-r',
        ids((...a) => backy(['-b', arch, ...a]))[0]!,
        '--force',
        out,
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(sha(await readFile(out))).toBe(sha(data));
    }
  });
});

describe('paths in an archive config', () => {
  it('resolves a relative source.filename against the archive, not the current directory', async () => {
    const arch = join(dir.path, 'relative');
    const own = randomBytes(2 * MiB);
    const { b } = await archive('relative', join(dir.path, 'unused.img'), (c) => {
      c.source.filename = 'disk.img';
    });
    await writeFile(join(arch, 'disk.img'), own);
    // Another disk of the same name where the backup is started.
    const elsewhere = join(dir.path, 'elsewhere');
    await mkdir(elsewhere);
    await writeFile(join(elsewhere, 'disk.img'), randomBytes(6 * MiB));
    const r = backy(['-b', arch, 'backup', 'manual:x'], { cwd: elsewhere });
    expect(r.code, r.stderr).toBe(0);
    const out = join(dir.path, 'relative-restored.img');
    expect(b('restore', '-r', 'last', '--force', out).code).toBe(0);
    expect(sha(await readFile(out))).toBe(sha(own));
  });

  it('warns loudly when the source size jumps, in the log, the revision and status', async () => {
    const image = join(dir.path, 'jump.img');
    await writeFile(image, randomBytes(2 * MiB));
    const { arch, b } = await archive('jump', image);
    expect(b('backup', 'manual:a').code).toBe(0);
    const first = ids(b)[0]!;
    await writeFile(image, randomBytes(5 * MiB));
    expect(b('backup', 'manual:b').code).toBe(0);
    const log = await readFile(join(arch, 'backy.log'), 'utf8');
    const warning = log
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .find((l) => l.level === 40 && /source size changed/.test(l.msg));
    expect(warning?.msg).toContain(`from ${2 * MiB} to ${5 * MiB} bytes since revision ${first}`);
    const revs = JSON.parse(b('status', '--json').stdout).revisions as {
      sourceInfo?: Record<string, unknown>;
    }[];
    expect(revs[1]!.sourceInfo?.sizeChanged).toEqual({ from: 2 * MiB, to: 5 * MiB, previous: first });
    expect(revs[0]!.sourceInfo?.sizeChanged).toBeUndefined();
    expect(b('status').stdout).toContain('SOURCE SIZE CHANGED: 2.00 MiB before, 5.00 MiB now');
  });
});

describe('a source that became empty', () => {
  it('fails the backup with one line naming it, unless the config allows an empty source', async () => {
    const image = join(dir.path, 'shrink.img');
    await writeFile(image, randomBytes(2 * MiB));
    const { arch, b } = await archive('shrink', image);
    expect(b('backup', 'manual:a').code).toBe(0);
    await truncate(image, 0);
    const r = b('backup', 'manual:b');
    expect(r.code).not.toBe(0);
    expect(oneLineError(r)).toMatch(
      new RegExp(`source ${image} is empty \\(0 bytes; revision \\S+ had ${2 * MiB}\\): refusing`),
    );
    expect(ids(b)).toHaveLength(1);
    const config = parse(await readFile(join(arch, 'config'), 'utf8'));
    config.source['allow-empty'] = true;
    await writeFile(join(arch, 'config'), stringify(config));
    const allowed = b('backup', 'manual:c');
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(ids(b)).toHaveLength(2);
  });
});

describe('allow-empty in the central config', () => {
  it('is accepted in a job source (backy itself reads it, not the source schema)', async () => {
    const conf = join(dir.path, 'central.conf');
    const base = join(dir.path, 'central-base');
    const job = (extra: Record<string, unknown>) =>
      stringify({
        global: { 'base-dir': base },
        schedules: { s: { daily: { interval: '1d', keep: 1 } } },
        jobs: { vm: { schedule: 's', source: { type: 'file', filename: '/srv/vm.img', ...extra } } },
      });
    await writeFile(conf, job({ 'allow-empty': true }));
    // No status file yet: the config itself passed (a config the daemon rejects is named instead).
    expect(backy(['check', '-c', conf]).stdout).toBe(
      `UNKNOWN: No status file found at ${join(base, 'status')}\n`,
    );
    await writeFile(conf, job({ 'allow-empty': 'yes' }));
    expect(backy(['check', '-c', conf]).stdout).toContain('jobs.vm.source.allow-empty');
  });
});

describe('values a config or argument must not get away with', () => {
  it('refuses an interval too long for the schedule, naming the key path', async () => {
    const image = join(dir.path, 'interval.img');
    await writeFile(image, randomBytes(MiB));
    const { arch, b } = await archive('interval', image, (c) => {
      c.schedule = { daily: { interval: '99999999999999999999d', keep: 3 } };
    });
    const r = b('status');
    expect(r.code).not.toBe(0);
    expect(oneLineError(r)).toContain(
      `${join(arch, 'config')}: schedule.daily.interval: duration "99999999999999999999d" is too long`,
    );
  });

  it('refuses the empty manual: tag', async () => {
    const image = join(dir.path, 'tag.img');
    await writeFile(image, randomBytes(MiB));
    const { b } = await archive('tag', image);
    const r = b('backup', 'manual:');
    expect(r.code).not.toBe(0);
    expect(oneLineError(r)).toContain('invalid tag "manual:": a manual: tag needs a name after the colon');
    expect(ids(b)).toHaveLength(0);
  });
});
