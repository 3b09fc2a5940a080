// Archives written by the real backy 2.1.1 (../shared/fixtures/backy-2.1.1): read, restored, verified
// and continued, never destroyed.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backy, tempDir } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('../../../../shared/fixtures/backy-2.1.1/', import.meta.url));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: { path: string; cleanup: () => Promise<void> };
let arch: string;
/** Revision → sha256 of its image, from the fixture's SHA256SUMS (oldest first). */
let sums: [string, string][];
const b = (...args: string[]) => backy(['-b', arch, ...args]);

beforeAll(async () => {
  dir = await tempDir();
  arch = join(dir.path, 'web01');
  await cp(join(FIXTURE, 'archive'), arch, { recursive: true });
  spawnSync('chmod', ['-R', 'u+w', arch]);
  // shared/ keeps no symlinks: the fixture holds `last` and `last.rev` as files naming their targets.
  // A real backy 2.x archive has them as symlinks; make them so.
  for (const name of ['last', 'last.rev']) {
    const target = (await readFile(join(arch, name), 'utf8')).trim();
    await rm(join(arch, name));
    await symlink(target, join(arch, name));
  }
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
