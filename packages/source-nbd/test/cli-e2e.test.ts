/**
 * End to end through the real `backy` binary with a qcow2 image: a full backup that reads only the
 * allocated extents, an incremental from the dirty bitmap after 1% was written through qemu-io, restores
 * compared with `qemu-img convert -O raw` copies of the image taken at each point, and a bitmap that lies
 * (writes made while it was disabled), which the sample check catches.
 */
import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB, tempDir } from '@backy/core/testing';
import { BACKY_BIN, skipWithoutCli } from '@backy/test-env/cli';
import { nbdToolsSkip, qemuImg, qemuIo } from '@backy/test-env/nbd';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const skipReason = nbdToolsSkip('source-nbd');

const skip = skipWithoutCli('source-nbd', skipReason);
const suite = skip != null ? describe.skip : describe;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function backy(dir: string, ...args: string[]): Promise<Result> {
  return new Promise((done) =>
    execFile(
      process.execPath,
      [BACKY_BIN, '-b', dir, ...args],
      { maxBuffer: 16 * MiB },
      (error, stdout, stderr) =>
        done({
          code: error == null ? 0 : typeof error.code === 'number' ? error.code : 1,
          stdout,
          stderr: error != null && error.signal != null ? `${stderr}(killed by ${error.signal})` : stderr,
        }),
    ),
  );
}

async function ok(dir: string, ...args: string[]): Promise<string> {
  const r = await backy(dir, ...args);
  if (r.code !== 0) throw new Error(`backy ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

interface Rev {
  uuid: string;
  stats: { bytesRead: number; chunksWritten: number };
  trust: string;
  verification: { ok: boolean; method: string };
  sourceInfo: Record<string, unknown>;
}

/** The revisions as `status --json` shows them (camelCase keys, docs/json.md). */
const revisions = async (dir: string) => JSON.parse(await ok(dir, 'status', '--json')).revisions as Rev[];

/** True if the two files hold the same bytes (read in pieces: they are a GiB each). */
async function sameContent(a: string, b: string): Promise<boolean> {
  const [fa, fb] = [await open(a), await open(b)];
  try {
    if ((await fa.stat()).size !== (await fb.stat()).size) return false;
    const [ba, bb] = [Buffer.alloc(16 * MiB), Buffer.alloc(16 * MiB)];
    for (let at = 0; ; at += ba.length) {
      const [ra, rb] = [await fa.read(ba, 0, ba.length, at), await fb.read(bb, 0, bb.length, at)];
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
  } finally {
    await fa.close();
    await fb.close();
  }
}

/** qemu-io commands writing `mib` MiB from `start` MiB, each MiB its own pattern byte. */
const writes = (start: number, mib: number, seed: number) =>
  Array.from({ length: mib }, (_, i) => `write -q -P ${(seed + i * 7) % 251} ${start + i}M 1M`);

suite('backy CLI with a qcow2 image', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let image: string;
  let archive: string;

  beforeAll(async () => {
    tmp = await tempDir('backy-nbd-e2e-');
    image = join(tmp.path, 'vm.qcow2');
    archive = join(tmp.path, 'archive');
  });
  afterAll(() => tmp?.cleanup());

  it('backs up 300 MiB of a 1 GiB image, then 1% of it incrementally, and restores both', async () => {
    await qemuImg('create', '-q', '-f', 'qcow2', image, '1G');
    await qemuIo(image, ...writes(0, 100, 1), ...writes(400, 100, 2), ...writes(800, 100, 3));
    const raw0 = join(tmp.path, 'point0.raw');
    await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', image, raw0);

    expect(await ok(archive, 'init', 'qcow2', image)).toMatch(/for qcow2 source/);
    await ok(archive, 'backup', '-f', 'full');
    const [full] = await revisions(archive);
    expect(full!.sourceInfo).toMatchObject({ mode: 'full', bitmap: `backy-${full!.uuid}` });
    // Only the 300 MiB that are allocated were read; the other 724 MiB are zero chunks.
    expect(full!.stats.bytesRead).toBe(300 * MiB);
    expect(full!.verification).toMatchObject({ ok: true });

    // 1% of the image (10 MiB), some over old data, some in space that was unallocated.
    await qemuIo(
      image,
      ...writes(50, 3, 9),
      ...writes(300, 3, 10),
      ...writes(450, 2, 11),
      ...writes(1000, 2, 12),
    );
    const raw1 = join(tmp.path, 'point1.raw');
    await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', image, raw1);
    await ok(archive, 'backup', '-f', 'incremental');
    const incremental = (await revisions(archive))[1]!;
    expect(incremental.sourceInfo).toMatchObject({
      mode: 'incremental',
      fromBitmap: `backy-${full!.uuid}`,
    });
    // Five dirty chunks of 4 MiB (50–53 MiB spans two), plus the sampled clean chunks that hold data.
    const sampled = incremental.sourceInfo.sampleChecked as number;
    expect(incremental.stats.bytesRead).toBeGreaterThanOrEqual(10 * MiB);
    expect(incremental.stats.bytesRead).toBeLessThanOrEqual((5 + sampled) * 4 * MiB);
    expect(incremental.stats.bytesRead).toBeLessThan(full!.stats.bytesRead / 4);
    expect(incremental.verification).toMatchObject({ ok: true, method: 'partial' });

    // The parent's bitmap is gone once the incremental was committed; the new one tracks from here.
    const info = JSON.parse(await qemuImg('info', '--output=json', image));
    expect(info['format-specific'].data.bitmaps.map((b: { name: string }) => b.name)).toEqual([
      `backy-${incremental.uuid}`,
    ]);

    for (const [rev, raw] of [
      [full!, raw0],
      [incremental, raw1],
    ] as const) {
      const target = join(tmp.path, `restored-${rev.uuid}.raw`);
      await ok(archive, 'restore', '-r', rev.uuid, target);
      expect(await sameContent(target, raw), `revision ${rev.uuid} restores the image as it was`).toBe(true);
    }
  });

  it('catches a bitmap that missed writes with the sample check: that backup reads everything', async () => {
    const last = (await revisions(archive)).at(-1)!;
    const bitmap = last.sourceInfo.bitmap as string;
    // Writes the bitmap does not see: disabled while all 300 MiB are overwritten, enabled again, so
    // that its flags look as healthy as ever.
    await qemuImg('bitmap', '--disable', image, bitmap);
    await qemuIo(image, ...writes(0, 100, 21), ...writes(400, 100, 22), ...writes(800, 100, 23));
    await qemuImg('bitmap', '--enable', image, bitmap);
    const raw2 = join(tmp.path, 'point2.raw');
    await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', image, raw2);

    await ok(archive, 'backup', '-f', 'lied-to');
    const caught = (await revisions(archive)).at(-1)!;
    expect(caught.sourceInfo).toMatchObject({ mode: 'full' });
    expect(caught.sourceInfo.sampleMismatches).toBeGreaterThan(0);
    expect(caught.stats.bytesRead).toBeGreaterThanOrEqual(306 * MiB);
    expect(caught.verification.ok).toBe(true);
    const target = join(tmp.path, 'restored-lied-to.raw');
    await ok(archive, 'restore', '-r', caught.uuid, target);
    expect(await sameContent(target, raw2)).toBe(true);

    // A bitmap that went missing: full backup as well, never an incremental from nothing.
    await qemuImg('bitmap', '--remove', image, caught.sourceInfo.bitmap as string);
    await ok(archive, 'backup', '-f', 'no-bitmap');
    expect((await revisions(archive)).at(-1)!.sourceInfo).toMatchObject({ mode: 'full' });
  });

  it('says in one line what is wrong with options or the server', async () => {
    const bad = await backy(join(tmp.path, 'bad'), 'init', 'nbd', 'http://example.org/disk');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim()).toMatch(
      /^backy: error: [^\n]*source\.url: must be nbd:\/\/host\[:port\]\/export/,
    );
    const gone = join(tmp.path, 'gone');
    await ok(gone, 'init', 'nbd', `nbd+unix:///vm?socket=${join(tmp.path, 'no.sock')}`);
    const unreachable = await backy(gone, 'backup', '-f', 'x');
    expect(unreachable.code).not.toBe(0);
    expect(unreachable.stderr.trim()).toMatch(
      /^backy: error: NBD server nbd\+unix:\/\/\/vm\?socket=\S+: no such socket$/,
    );
    const missing = join(tmp.path, 'missing');
    await ok(missing, 'init', 'qcow2', join(tmp.path, 'no.qcow2'));
    const noImage = await backy(missing, 'backup', '-f', 'x');
    expect(noImage.stderr.trim()).toMatch(/^backy: error: qcow2 image \S+no\.qcow2: no such file$/);
  });
});
