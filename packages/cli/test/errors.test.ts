import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BIN,
  backy,
  backyAsync,
  damageChunkOf,
  isRoot,
  missingTools,
  oneLineError,
  skipWithout,
  tempDir,
} from './helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
let image: string;
let arch: string;
const b = (...args: string[]) => backy(['-b', arch, ...args]);

async function setUp(size = 9 * MiB): Promise<Buffer> {
  const data = Buffer.concat([
    randomBytes(size - 2 * MiB),
    Buffer.from('text\n'.repeat((2 * MiB) / 5 + 1)).subarray(0, 2 * MiB),
  ]);
  await writeFile(image, data);
  expect(b('init', 'file', image).code).toBe(0);
  return data;
}

/** Every earlier revision still restores byte for byte to what it was. */
async function expectRestorable(expected: Map<string, Buffer>): Promise<void> {
  for (const [id, data] of expected) {
    const out = join(dir.path, `check-${id}`);
    const r = b('restore', '-r', id, '--force', out);
    expect(r.code, r.stderr).toBe(0);
    expect((await readFile(out)).equals(data)).toBe(true);
  }
}

const lastId = () => JSON.parse(b('status', '--json').stdout).revisions.at(-1).uuid as string;

beforeEach(async () => {
  dir = await tempDir();
  image = join(dir.path, 'disk.img');
  arch = join(dir.path, 'archive');
});
afterEach(() => dir.cleanup());

describe('bad input gets one clear line and a non-zero exit', () => {
  it('missing or unreadable source', async () => {
    const data = await setUp();
    expect(b('backup', 'daily').code).toBe(0);
    const kept = new Map([[lastId(), data]]);
    await rm(image);
    const missing = b('backup', 'daily');
    expect(missing.code).toBe(1);
    expect(oneLineError(missing)).toBe(`backy: error: source file ${image}: no such file`);
    await mkdir(image);
    const notAFile = b('backup', 'daily');
    expect(oneLineError(notAFile)).toContain('not a regular file or block device');
    expect(JSON.parse(b('status', '--json').stdout).revisions).toHaveLength(1);
    await expectRestorable(kept);
    // init warns about a missing source but still writes the config
    const other = join(dir.path, 'other');
    const init = backy(['-b', other, 'init', 'file', join(dir.path, 'nope.img')]);
    expect(init.code).toBe(0);
    expect(init.stderr).toContain('warning: source file');
  });

  it('malformed configs name the file and key path', async () => {
    await setUp();
    const config = join(arch, 'config');
    await writeFile(config, 'source:\n  type: file\n  filename: [unclosed\n');
    expect(oneLineError(b('backup', 'daily'))).toMatch(
      new RegExp(`^backy: error: ${config}:\\d+: invalid YAML`),
    );
    await writeFile(config, 'source:\n  type: file\n');
    expect(oneLineError(b('backup', 'daily'))).toBe(`backy: error: ${config}: source.filename: required`);
    await writeFile(config, `source:\n  type: file\n  filename: ${image}\n  colour: blue\n`);
    expect(oneLineError(b('backup', 'daily'))).toBe(`backy: error: ${config}: source: unknown key "colour"`);
    await writeFile(
      config,
      `source:\n  type: file\n  filename: ${image}\nschedule:\n  daily: {interval: often, keep: 3}\n`,
    );
    expect(oneLineError(b('status'))).toContain('schedule.daily.interval: invalid duration "often"');
    await writeFile(config, `source:\n  type: no-such-source-type\n`);
    expect(oneLineError(b('backup', 'daily'))).toContain('unknown source type "no-such-source-type"');
    const none = backy(['-b', join(dir.path, 'empty'), 'status']);
    expect(oneLineError(none)).toContain('is not a backy archive');
  });

  it('unknown and ambiguous revisions', async () => {
    await setUp();
    for (let i = 0; i < 12; i++) expect(b('backup', 'daily').code).toBe(0);
    const ids: string[] = JSON.parse(b('status', '--json').stdout).revisions.map(
      (r: { uuid: string }) => r.uuid,
    );
    const unknown = b('restore', '-r', 'nosuchrev', join(dir.path, 'x'));
    expect(oneLineError(unknown)).toBe(
      'backy: error: revision "nosuchrev": no revision has that ID, ID prefix or tag',
    );
    // Two revisions whose IDs share a prefix (copies of the newest under crafted IDs).
    const newest = ids.at(-1)!;
    const rev = await readFile(join(arch, `${newest}.rev`), 'utf8');
    for (const id of ['AmbigPrefix2345678abcd', 'AmbigPrefix2345678abce']) {
      await writeFile(join(arch, `${id}.rev`), rev.replace(newest, id));
      await writeFile(join(arch, `${id}.map`), await readFile(join(arch, `${newest}.map`)));
    }
    expect(oneLineError(b('find', '-r', 'AmbigPrefix'))).toMatch(
      /revision "AmbigPrefix" is ambiguous: it is a prefix of AmbigPrefix\w+, AmbigPrefix\w+/,
    );
    expect(b('find', '-r', 'AmbigPrefix2345678abce').stdout.trim()).toBe('AmbigPrefix2345678abce');
    for (const id of ['AmbigPrefix2345678abcd', 'AmbigPrefix2345678abce']) {
      await rm(join(arch, `${id}.rev`));
      await rm(join(arch, `${id}.map`));
    }
    expect(oneLineError(b('find', '-r', 'all'))).toContain('matches 12 revisions');
    expect(oneLineError(b('find', '-r', '40'))).toContain('there are only 12 revisions');
  });

  it('a corrupted chunk is found by verify and restore, earlier revisions stay restorable', async () => {
    const data = await setUp();
    expect(b('backup', 'daily').code).toBe(0);
    const first = lastId();
    const changed = Buffer.from(data);
    randomBytes(1000).copy(changed, 5 * MiB);
    await writeFile(image, changed);
    expect(b('backup', 'daily').code).toBe(0);
    const second = lastId();
    // Damage the chunk only the second revision has (chunk 1: 4–8 MiB).
    expect(JSON.parse(b('status', '--json').stdout).revisions).toHaveLength(2);
    const damaged = await damageChunkOf(arch, second, 1);
    const verify = b('verify');
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain(`${second}: DAMAGED, 1 chunk (revision distrusted)`);
    expect(verify.stdout).toContain(`offset ${4 * MiB} (4.0 MiB), chunk 1: chunk ${damaged} is damaged`);
    expect(verify.stdout).toContain(`${first}: verified`);
    const restore = b('restore', '-r', second, join(dir.path, 'bad.img'));
    expect(oneLineError(restore)).toContain(`chunk ${damaged} is damaged`);
    expect((await readdir(dir.path)).some((f) => f.includes('bad.img'))).toBe(false);
    await expectRestorable(new Map([[first, data]]));
    // The next backup rewrites what it touches, healing the store.
    expect(b('backup', 'daily').code).toBe(0);
    await expectRestorable(new Map([[lastId(), changed]]));
  });

  it('a second concurrent backup fails fast with exit status 69', async () => {
    await setUp();
    // Hold the archive's backup lock from another process, as a running backup does.
    const holder = spawn(
      'bash',
      ['-c', `exec 3>>"${join(arch, '.backup.lock')}"; flock -x 3; echo held; exec sleep 30`],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    await new Promise((r) => holder.stdout!.once('data', r));
    const started = Date.now();
    const r = b('backup', 'daily');
    holder.kill('SIGKILL');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(r.code).toBe(69);
    expect(oneLineError(r)).toBe(
      `backy: error: a backup of ${arch} is already running (or another command is changing its revisions)`,
    );
  });

  it('kill -9 in the middle of a backup leaves no lock and no visible revision', async () => {
    const data = await setUp(9 * MiB);
    expect(b('backup', 'daily').code).toBe(0);
    const kept = new Map([[lastId(), data]]);
    await writeFile(image, randomBytes(300 * MiB));
    const child = backyAsync(['-b', arch, 'backup', 'daily']);
    await waitForChunks(arch, 3);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(JSON.parse(b('status', '--json').stdout).revisions).toHaveLength(1);
    await expectRestorable(kept);
    await writeFile(image, data);
    const next = b('backup', 'daily');
    expect(next.code, next.stderr).toBe(0);
    expect((await readdir(arch)).filter((f) => f.endsWith('.map'))).toHaveLength(2);
  });

  it('SIGTERM in the middle of a backup aborts cleanly', async () => {
    await setUp(9 * MiB);
    await writeFile(image, randomBytes(300 * MiB));
    const child = backyAsync(['-b', arch, 'backup', 'daily']);
    let stderr = '';
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    await waitForChunks(arch, 3);
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.once('exit', r));
    expect(code).toBe(130);
    expect(stderr.trim()).toBe('backy: error: backup aborted');
    const scan = (await readdir(arch)).filter(
      (f) => f.endsWith('.rev') || f.endsWith('.map') || f.endsWith('.tmp'),
    );
    expect(scan).toEqual([]);
  });

  it.skipIf(skipWithout('terminal refusal', 'script') != null)(
    'refuses to write image data to a terminal',
    async () => {
      await setUp();
      expect(b('backup', 'daily').code).toBe(0);
      const r = spawnSync(
        'script',
        ['-qec', `${process.execPath} ${BIN} -b ${arch} restore -`, '/dev/null'],
        {
          encoding: 'utf8',
        },
      );
      expect(r.status).toBe(2);
      expect(r.stdout).toContain('refusing to write binary image data to a terminal');
    },
  );
});

describe('real file-system and device limits', () => {
  const tmpfsReason = !isRoot ? 'needs root to mount a tmpfs' : missingTools('mount', 'umount');
  if (tmpfsReason) console.warn(`[e2e] full-disk test skipped: ${tmpfsReason}`);
  it.skipIf(tmpfsReason != null)(
    'a full disk fails the backup and keeps every earlier revision',
    async () => {
      const small = join(dir.path, 'small');
      await mkdir(small);
      const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', small]);
      if (mounted.status !== 0) throw new Error(`mount tmpfs failed: ${mounted.stderr}`);
      try {
        arch = join(small, 'archive');
        const data = await setUp(9 * MiB);
        expect(b('backup', 'daily').code).toBe(0);
        const kept = new Map([[lastId(), data]]);
        // tmpfs has no O_DIRECT: restore falls back to writing through the page cache.
        const onTmpfs = join(small, 'restored.img');
        expect(b('restore', onTmpfs).code).toBe(0);
        expect((await readFile(onTmpfs)).equals(data)).toBe(true);
        await rm(onTmpfs);
        await writeFile(image, randomBytes(40 * MiB));
        const r = b('backup', 'daily');
        expect(r.code).toBe(1);
        expect(oneLineError(r)).toMatch(/no space left on device/);
        expect(JSON.parse(b('status', '--json').stdout).revisions).toHaveLength(1);
        expect((await readdir(arch)).filter((f) => f.endsWith('.map') || f.endsWith('.tmp'))).toHaveLength(1);
        await expectRestorable(kept);
        // Fill the last bytes too, the log file's last page included: a log line that cannot be
        // written must neither fail nor hang a restore.
        const log = await open(join(arch, 'backy.log'), 'a');
        try {
          for (;;) await log.write(Buffer.alloc(512, 0x2e));
        } catch (error) {
          expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
        } finally {
          await log.close();
        }
        const out = join(dir.path, 'after-full.img');
        const restored = b('restore', out);
        expect(restored.code, restored.stderr).toBe(0);
        expect(restored.stderr).toMatch(/warning: cannot write log file .*backy\.log \(ENOSPC\)/);
        expect((await readFile(out)).equals(data)).toBe(true);
      } finally {
        spawnSync('umount', [small]);
      }
    },
  );

  const loopReason = !isRoot ? 'needs root for losetup' : missingTools('losetup');
  if (loopReason) console.warn(`[e2e] block-device restore test skipped: ${loopReason}`);
  it.skipIf(loopReason != null)('restores to a block device (loop device)', async () => {
    const data = await setUp(9 * MiB);
    expect(b('backup', 'daily').code).toBe(0);
    const backing = join(dir.path, 'loop.img');
    await writeFile(backing, randomBytes(12 * MiB)); // garbage where the zeros must go
    const attach = spawnSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' });
    if (attach.status !== 0) throw new Error(`losetup failed: ${attach.stderr}`);
    const device = attach.stdout.trim();
    try {
      const r = b('restore', device);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`to block device ${device}`);
      const readBack = spawnSync('head', ['-c', String(data.length), device], { maxBuffer: 64 * MiB }).stdout;
      expect(readBack.equals(data)).toBe(true);
    } finally {
      spawnSync('losetup', ['-d', device]);
    }
  });
});

async function chunkFiles(archive: string): Promise<string[]> {
  const root = join(archive, 'chunks');
  const out: string[] = [];
  for (const fan of await readdir(root)) {
    if (!/^[0-9a-f]{2}$/.test(fan)) continue;
    out.push(...(await readdir(join(root, fan))));
  }
  return out;
}

/** Flips a byte in the stored chunk at `index` of revision `id`; returns its hash. */
async function waitForChunks(archive: string, atLeast: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  const initial = (await chunkFiles(archive)).length;
  while (Date.now() < deadline) {
    if ((await chunkFiles(archive)).length >= initial + atLeast) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('backup did not start writing chunks');
}
