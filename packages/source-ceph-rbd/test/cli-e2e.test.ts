/**
 * End to end through the real `backy` binary: init a ceph-rbd archive, back up, and put a revision back
 * into the cluster with `backy restore -r X - | rbd import - POOL/NEWIMAGE`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  conf,
  createImage,
  exportImage,
  importDiffRaw,
  MiB,
  POOL,
  removeImage,
  runTool,
  skipReason,
  uniqueImage,
  writeImage,
} from './helpers.js';

const backyBin = resolve(import.meta.dirname, '../../cli/bin/backy.js');
const built = await access(resolve(import.meta.dirname, '../../cli/dist/index.js')).then(
  () => true,
  () => false,
);
const cliSkip = skipReason ?? (built ? null : 'the backy CLI is not built (run `pnpm build`)');
if (cliSkip != null && skipReason == null) {
  if (process.env.CI === 'true')
    throw new Error(`CLI end-to-end test must not be skipped under CI=true: ${cliSkip}`);
  console.warn(`[source-ceph-rbd] CLI end-to-end test skipped: ${cliSkip}`);
}
const suite = cliSkip ? describe.skip : describe;
const env = { ...process.env, CEPH_CONF: conf };

const backy = (dir: string, ...args: string[]) =>
  runTool(process.execPath, [backyBin, '-b', dir, ...args]).then((b) => b.toString());

suite('backy CLI with a ceph-rbd archive', () => {
  const image = uniqueImage('cli');
  const copy = uniqueImage('cli-restored');
  let dir: string;

  beforeAll(async () => {
    process.env.CEPH_CONF = conf; // runTool passes the environment on to backy and rbd
    dir = await mkdtemp(join(tmpdir(), 'backy-rbd-cli-'));
    await createImage(image, 20 * MiB + 4096);
    await importDiffRaw(image, [
      { type: 'size', size: 20 * MiB + 4096 },
      { type: 'data', offset: MiB, data: randomBytes(9 * MiB) },
    ]);
  });

  afterAll(async () => {
    await removeImage(image);
    await removeImage(copy);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('inits, backs up twice and restores into a new image with rbd import', async () => {
    expect(await backy(dir, 'init', 'ceph-rbd', `${POOL}/${image}`)).toMatch(
      /Initialized archive .* for ceph-rbd source rbd\//,
    );
    await backy(dir, 'backup', '-f', 'first');
    await writeImage(image, 15 * MiB, randomBytes(100_000));
    await backy(dir, 'backup', '-f', 'second');
    const id = (await backy(dir, 'find', '-r', 'last')).trim();

    await new Promise<void>((done, fail) => {
      const restore = spawn(process.execPath, [backyBin, '-b', dir, 'restore', '-r', id, '-'], {
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
    const restored = await exportImage(copy);
    const expected = await exportImage(`${image}@backy-${id}`);
    expect(restored.length).toBe(20 * MiB + 4096);
    expect(restored.equals(expected)).toBe(true);
  });
});
