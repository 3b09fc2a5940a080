/**
 * End to end through the real `backy` binary: init a ceph-rbd archive, back up, and put a revision back
 * into the cluster with `backy restore -r X - | rbd import - POOL/NEWIMAGE`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { duplicateKeys, MiB } from '@backy/core/testing';
import { runTool } from '@backy/test-env/ceph';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ceph, conf, POOL, skipReason, uniqueImage } from './helpers.js';

const suite = skipWithoutCli('source-ceph-rbd', skipReason) != null ? describe.skip : describe;
const env = { ...process.env, CEPH_CONF: conf };

const backy = (dir: string, ...args: string[]) =>
  runTool(process.execPath, [BACKY_BIN, '-b', dir, ...args]).then((b) => b.toString());

suite('backy CLI with a ceph-rbd archive', () => {
  const image = uniqueImage('cli');
  const copy = uniqueImage('cli-restored');
  let dir: string;

  beforeAll(async () => {
    process.env.CEPH_CONF = conf; // runTool passes the environment on to backy and rbd
    dir = await mkdtemp(join(tmpdir(), 'backy-rbd-cli-'));
    await ceph.createImage(image, 20 * MiB + 4096, [{ offset: MiB, data: randomBytes(9 * MiB) }]);
  });

  afterAll(async () => {
    await ceph.removeImage(image);
    await ceph.removeImage(copy);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('inits, backs up twice and restores into a new image with rbd import', async () => {
    expect(await backy(dir, 'init', 'ceph-rbd', `${POOL}/${image}`)).toMatch(
      /Initialized archive .* for ceph-rbd source rbd\//,
    );
    await backy(dir, 'backup', '-f', 'first');
    await ceph.writeImage(image, 15 * MiB, randomBytes(100_000));
    await backy(dir, 'backup', '-f', 'second');
    const id = (await backy(dir, 'find', '-r', 'last')).trim();

    await new Promise<void>((done, fail) => {
      const restore = spawn(process.execPath, [BACKY_BIN, '-b', dir, 'restore', '-r', id, '-'], {
        env,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const load = spawn('rbd', ['--conf', conf, 'import', '--no-progress', '-', `${POOL}/${copy}`], {
        stdio: ['pipe', 'inherit', 'inherit'],
      });
      restore.stdout.pipe(load.stdin);
      let pending = 2;
      const exited = (what: string) => (code: number | null) => {
        if (code !== 0) fail(new Error(`${what} exited ${code}`));
        else if (--pending === 0) done();
      };
      restore.on('close', exited('backy restore'));
      load.on('close', exited('rbd import'));
    });
    const restored = await ceph.exportImage(copy);
    const expected = await ceph.exportImage(`${image}@backy-${id}`);
    expect(restored.length).toBe(20 * MiB + 4096);
    expect(restored.equals(expected)).toBe(true);
  });

  it('logs info to backy.log by default and each rbd command at debug with -v, no key twice', async () => {
    const records = async () => {
      const lines = (await readFile(join(dir, 'backy.log'), 'utf8')).split('\n').filter((l) => l !== '');
      expect(lines.flatMap(duplicateKeys)).toEqual([]);
      return lines.map((l) => JSON.parse(l) as { level: number; msg: string; argv?: string[] });
    };
    // The backups of the test above, without -v.
    const before = await records();
    expect(before.filter((r) => r.msg === 'backup completed')).toHaveLength(2);
    expect(before.filter((r) => r.level < 30)).toEqual([]);
    await runTool(process.execPath, [BACKY_BIN, '-v', '-b', dir, 'backup', '-f', 'third']);
    const rbd = (await records()).slice(before.length).filter((r) => r.msg === 'running rbd');
    expect(rbd.length).toBeGreaterThan(0);
    expect(rbd.every((r) => r.level === 20 && r.argv?.[0] === 'rbd')).toBe(true);
  });
});
