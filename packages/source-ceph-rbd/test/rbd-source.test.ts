import { randomBytes } from 'node:crypto';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Archive, isBackyError, type Revision, runBackup } from '@backy/core';
import {
  captureLogger,
  duplicateKeys,
  type LogLine,
  MiB,
  restoreToBuffer,
  verifyContextFor,
} from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import rbdSource, { createRbdSource, type RbdSourceHooks } from '../src/index.js';
import { CHUNK, ceph, conf, logger, POOL, rbdArchive, skipReason, uniqueImage } from './helpers.js';

const suite = skipReason ? describe.skip : describe;

suite('ceph-rbd source against a real cluster', () => {
  const image = uniqueImage('source');
  let dir: string;
  let archive: Archive;

  const source = (
    hooks?: RbdSourceHooks,
    extra: { id?: string; keyring?: string; 'full-always'?: boolean } = {},
    log = logger,
  ) => createRbdSource({ pool: POOL, image, conf, 'full-always': false, ...extra }, { logger: log }, hooks);
  const backup = (src = source(), log = logger) =>
    runBackup(archive, src, { tags: ['test'], force: true, logger: log });
  const warnings = (lines: LogLine[]) => lines.filter((l) => l.level >= 40).map((l) => l.msg);
  const snapshotNames = async () => (await ceph.snapshotNames(image)).sort();

  /** Restores the revision to a file and compares it byte for byte with `rbd export` of its snapshot. */
  async function expectRestoreMatchesSnapshot(rev: Revision): Promise<void> {
    expect(rev.source_info?.snapshot).toBe(`backy-${rev.uuid}`);
    const restored = await restoreToBuffer(archive, rev.uuid);
    const expected = await ceph.exportImage(`${image}@backy-${rev.uuid}`);
    expect(restored.length).toBe(expected.length);
    expect(restored.equals(expected)).toBe(true);
  }

  beforeAll(async () => {
    ({ dir, archive } = await rbdArchive());
    // 10 chunks: random data in 0-3 and 6, a partly written 9, zeros in between.
    await ceph.createImage(image, 40 * MiB, [
      { offset: 0, data: randomBytes(4 * CHUNK) },
      { offset: 6 * CHUNK, data: randomBytes(CHUNK) },
      { offset: 9 * CHUNK + 1000, data: randomBytes(300_000) },
    ]);
  });

  afterAll(async () => {
    await ceph.removeImage(image);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('makes a full backup with rbd export first, verified by a sample, that restores byte for byte', async () => {
    const rev = await backup();
    expect(rev.source_info).toMatchObject({ mode: 'full', pool: POOL, image, snapshot: `backy-${rev.uuid}` });
    expect(rev.size).toBe(40 * MiB);
    expect(rev.trust).toBe('trusted');
    expect(rev.verification).toMatchObject({
      ok: true,
      method: 'partial',
      chunks_checked: 1,
      chunks_total: 10,
    });
    expect(rev.stats.bytes_read).toBe(40 * MiB);
    expect(await snapshotNames()).toEqual([`backy-${rev.uuid}`]);
    await expectRestoreMatchesSnapshot(rev);
  });

  it('makes an incremental backup from export-diff that reads and writes only the touched chunks', async () => {
    const [first] = await archive.revisions();
    await ceph.writeImage(image, CHUNK + 123, Buffer.from('patched in the middle of chunk 1'));
    await ceph.qemuIo(image, `write -P 0x5a ${4 * CHUNK + 4096} 100k`);
    await ceph.writeImage(image, 9 * CHUNK + 2_000_000, randomBytes(5000));
    const rev = await backup();
    expect(rev.source_info).toMatchObject({ mode: 'diff', from_snapshot: `backy-${first!.uuid}` });
    expect(rev.parent).toBe(first!.uuid);
    expect(rev.stats.bytes_read).toBeGreaterThan(0);
    expect(rev.stats.bytes_read).toBeLessThanOrEqual(3 * CHUNK);
    expect(rev.stats.chunks_written).toBe(3);
    expect(rev.stats.chunks_reused).toBe(7);
    await expectRestoreMatchesSnapshot(rev);
    // The parent's snapshot is gone, the new one kept.
    expect(await snapshotNames()).toEqual([`backy-${rev.uuid}`]);
  });

  it('stores zeroed and discarded ranges as zero chunks', async () => {
    await ceph.qemuIo(
      image,
      `write -z 0 ${CHUNK}`,
      `discard ${2 * CHUNK} ${CHUNK}`,
      `write -z ${6 * CHUNK + MiB} ${MiB}`,
    );
    const rev = await backup();
    expect(rev.source_info?.mode).toBe('diff');
    const reader = await archive.openReader(rev);
    expect(reader.isZero(0)).toBe(true);
    expect(reader.isZero(2)).toBe(true);
    expect(reader.isZero(6)).toBe(false);
    await reader.close();
    expect(rev.stats.chunks_zero).toBeGreaterThanOrEqual(2);
    await expectRestoreMatchesSnapshot(rev);
  });

  it('follows the image when it grows and shrinks to sizes that are not chunk multiples', async () => {
    await ceph.resizeImage(image, 50 * MiB + 4096);
    await ceph.writeImage(image, 50 * MiB, randomBytes(4096));
    await ceph.writeImage(image, 41 * MiB, Buffer.from('in the grown part'));
    const grown = await backup();
    expect(grown.source_info?.mode).toBe('diff');
    expect(grown.size).toBe(50 * MiB + 4096);
    await expectRestoreMatchesSnapshot(grown);

    await ceph.resizeImage(image, 22 * MiB + 512);
    const shrunk = await backup();
    expect(shrunk.source_info?.mode).toBe('diff');
    expect(shrunk.size).toBe(22 * MiB + 512);
    await expectRestoreMatchesSnapshot(shrunk);
  });

  it('falls back to a full export when the parent snapshot was deleted', async () => {
    const parent = (await archive.revisions()).at(-1)!;
    await ceph.rbd('snap', 'rm', '--no-progress', `${POOL}/${image}@backy-${parent.uuid}`);
    await ceph.writeImage(image, 3 * CHUNK, randomBytes(1000));
    const rev = await backup();
    expect(rev.source_info?.mode).toBe('full');
    expect(rev.stats.bytes_read).toBe(22 * MiB + 512);
    // Unchanged chunks are deduplicated against the parent even in a full backup.
    expect(rev.stats.chunks_written).toBe(1);
    await expectRestoreMatchesSnapshot(rev);
  });

  it('makes a full backup after a distrusted parent, and diffs again after that', async () => {
    const parent = (await archive.revisions()).at(-1)!;
    await archive.updateRevision(parent.uuid, (r) => ({ ...r, trust: 'distrusted' }));
    await ceph.writeImage(image, 5 * CHUNK, randomBytes(2000));
    const full = await backup();
    expect(full.source_info?.mode).toBe('full');
    await expectRestoreMatchesSnapshot(full);
    await ceph.writeImage(image, 0, randomBytes(2000));
    const next = await backup();
    expect(next.source_info).toMatchObject({ mode: 'diff', from_snapshot: `backy-${full.uuid}` });
    await expectRestoreMatchesSnapshot(next);
  });

  it('honours full-always', async () => {
    const rev = await backup(source({}, { 'full-always': true }));
    expect(rev.source_info?.mode).toBe('full');
    await expectRestoreMatchesSnapshot(rev);
  });

  it('removes older backy snapshots only: foreign snapshots stay, a protected one is left and logged', async () => {
    await ceph.rbd('snap', 'create', '--no-progress', `${POOL}/${image}@before-upgrade`);
    await ceph.rbd('snap', 'create', '--no-progress', `${POOL}/${image}@backy-stale`);
    await ceph.rbd('snap', 'create', '--no-progress', `${POOL}/${image}@backy-protected`);
    await ceph.rbd('snap', 'protect', `${POOL}/${image}@backy-protected`);
    const { logger: log, lines } = captureLogger();
    const src = source({}, {}, log);
    const rev = await backup(src, log);
    await src.settled();
    expect(rev.trust).toBe('trusted');
    expect(await snapshotNames()).toEqual([`backy-${rev.uuid}`, 'backy-protected', 'before-upgrade'].sort());
    expect(warnings(lines)).toEqual([
      'snapshot backy-protected is protected and was left in place; unprotect and remove it by hand',
    ]);
    await ceph.rbd('snap', 'unprotect', `${POOL}/${image}@backy-protected`);
    const again = source();
    const next = await backup(again);
    await again.settled();
    expect(await snapshotNames()).toEqual([`backy-${next.uuid}`, 'before-upgrade'].sort());
    await expectRestoreMatchesSnapshot(next);
  });

  /** An rbd whose `snap rm` runs `action` first (the rest of rbd as is). */
  async function rbdWithSnapRemove(name: string, action: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(
      path,
      [
        '#!/bin/bash',
        `for a in "$@"; do if [ "$a" = rm ]; then ${action}; fi; done`,
        'exec rbd "$@"',
        '',
      ].join('\n'),
    );
    await chmod(path, 0o755);
    return path;
  }

  it('returns from a backup without waiting for the removal of older snapshots', async () => {
    await ceph.rbd('snap', 'create', '--no-progress', `${POOL}/${image}@backy-stale`);
    const parent = (await archive.revisions()).at(-1)!;
    const gate = join(dir, 'snap-rm-gate');
    // Every `snap rm` waits until the gate opens: a backup that waited for one would never return.
    const gated = source({
      rbdBinary: await rbdWithSnapRemove('gated-rbd', `while [ ! -e ${gate} ]; do sleep 0.05; done`),
    });
    await ceph.writeImage(image, 2 * CHUNK, randomBytes(1000));
    const rev = await backup(gated);
    expect(rev.source_info).toMatchObject({ mode: 'diff', from_snapshot: `backy-${parent.uuid}` });
    expect(rev.trust).toBe('trusted');
    const backyOnly = async () => (await snapshotNames()).filter((n) => n.startsWith('backy-'));
    expect(await backyOnly()).toEqual([`backy-${parent.uuid}`, `backy-${rev.uuid}`, 'backy-stale'].sort());
    await writeFile(gate, '');
    await gated.settled();
    expect(await backyOnly()).toEqual([`backy-${rev.uuid}`]);
    await expectRestoreMatchesSnapshot(rev);
  });

  it('does not fail a backup whose snapshot removals fail, and removes them in the next backup', async () => {
    const parent = (await archive.revisions()).at(-1)!;
    await ceph.rbd('snap', 'create', '--no-progress', `${POOL}/${image}@backy-stale`);
    const { logger: log, lines, raw } = captureLogger();
    const failingLogged = source(
      { rbdBinary: await rbdWithSnapRemove('failing-rbd', 'echo "rbd: injected failure" >&2; exit 1') },
      {},
      log,
    );
    await ceph.writeImage(image, 4 * CHUNK, randomBytes(1000));
    const rev = await backup(failingLogged, log);
    await failingLogged.settled();
    expect(rev.trust).toBe('trusted');
    expect(warnings(lines).sort()).toEqual(
      [`could not remove snapshot backy-${parent.uuid}`, 'could not remove snapshot backy-stale'].map((m) =>
        expect.stringContaining(m),
      ),
    );
    // A removal's line names the snapshot it removes, beside the backup's own `snapshot` only once.
    expect(raw.flatMap(duplicateKeys)).toEqual([]);
    const backyOnly = async () => (await snapshotNames()).filter((n) => n.startsWith('backy-'));
    expect(await backyOnly()).toEqual([`backy-${parent.uuid}`, `backy-${rev.uuid}`, 'backy-stale'].sort());
    // The next backup diffs from the last one and takes the leftovers away.
    await ceph.writeImage(image, 4 * CHUNK, randomBytes(1000));
    const real = source();
    const next = await backup(real);
    await real.settled();
    expect(next.source_info).toMatchObject({ mode: 'diff', from_snapshot: `backy-${rev.uuid}` });
    expect(await backyOnly()).toEqual([`backy-${next.uuid}`]);
    await expectRestoreMatchesSnapshot(next);
  });

  it('verifies every chunk through qemu-img and through rbd export when asked to', async () => {
    for (const verifyReader of ['qemu-img', 'export'] as const) {
      const { logger: log, lines } = captureLogger();
      const rev = await backup(source({ verifyFraction: 1, verifyReader }, {}, log), log);
      expect(rev.verification).toMatchObject({
        ok: true,
        method: 'full',
        chunks_checked: 6,
        chunks_total: 6,
      });
      // No fallback from qemu-img to rbd export.
      expect(warnings(lines)).toEqual([]);
    }
    const partial = await backup(source({ verifyFraction: 0.5, verifyReader: 'export' }));
    expect(partial.verification).toMatchObject({
      ok: true,
      method: 'partial',
      chunks_checked: 3,
      chunks_total: 6,
    });

    // Out of time: still at least one chunk, recorded as partial.
    for (const verifyReader of ['qemu-img', 'export'] as const) {
      const reader = await archive.openReader(partial);
      const result = await source({ verifyFraction: 1, verifyReader }).verify!(
        verifyContextFor(partial, reader, logger, { budgetMs: 0 }),
      ).finally(() => reader.close());
      expect(result).toMatchObject({ ok: true, method: 'partial', chunks_total: 6 });
      expect(result.chunks_checked).toBeGreaterThanOrEqual(1);
      expect(result.chunks_checked).toBeLessThanOrEqual(verifyReader === 'export' ? 1 : 3);
    }
  });

  it('reports verification progress in bytes of the sampled chunks; log records name no key twice', async () => {
    const { logger: log, raw } = captureLogger();
    const seen: { phase: string; done: number; total: number }[] = [];
    const rev = await runBackup(archive, source({ verifyFraction: 0.5, verifyReader: 'export' }, {}, log), {
      tags: ['test'],
      force: true,
      logger: log,
      onProgress: (p) => seen.push(p),
    });
    const checked = rev.verification!.chunks_checked;
    const verify = seen.filter((p) => p.phase === 'verify');
    expect(verify).toHaveLength(checked);
    const last = verify.at(-1)!;
    expect(last.done).toBe(last.total);
    // Bytes, not chunks: more than all but one whole chunk, at most every chunk whole.
    expect(last.total).toBeGreaterThan((checked - 1) * CHUNK);
    expect(last.total).toBeLessThanOrEqual(checked * CHUNK);
    expect(raw.length).toBeGreaterThan(0);
    expect(raw.flatMap(duplicateKeys)).toEqual([]);
  });

  it('distrusts a revision whose chunks differ from the snapshot; the next backup is full', async () => {
    // Someone replaced the parent's snapshot with one of other content under the same name: the diff
    // from it misses the change in chunk 3, which only the verification can notice.
    const parent = (await archive.revisions()).at(-1)!;
    const parentSnapshot = `${POOL}/${image}@backy-${parent.uuid}`;
    await ceph.rbd('snap', 'rm', '--no-progress', parentSnapshot);
    await ceph.writeImage(image, 3 * CHUNK + 10, randomBytes(1000));
    await ceph.rbd('snap', 'create', '--no-progress', parentSnapshot);
    await ceph.writeImage(image, 1 * CHUNK, randomBytes(1000));
    const bad = await backup(source({ verifyFraction: 1 }));
    expect(bad.source_info?.mode).toBe('diff');
    expect(bad.trust).toBe('distrusted');
    expect(bad.verification).toMatchObject({ ok: false, method: 'full', mismatches: [3] });
    // The qemu-img path sees the same mismatch.
    const badReader = await archive.openReader(bad);
    const again = await source({ verifyFraction: 1, verifyReader: 'qemu-img' }).verify!(
      verifyContextFor(bad, badReader, logger),
    ).finally(() => badReader.close());
    expect(again).toMatchObject({ ok: false, method: 'full', mismatches: [3] });

    const good = await backup(source({ verifyFraction: 1 }));
    expect(good.source_info?.mode).toBe('full');
    expect(good.trust).toBe('trusted');
    expect(good.verification?.ok).toBe(true);
    await expectRestoreMatchesSnapshot(good);
  });

  it('passes the client id and keyring to rbd and qemu-img', async () => {
    const keyring = join(dirname(conf), 'keyring');
    const { logger: log, lines } = captureLogger();
    const rev = await backup(
      source({ verifyFraction: 1, verifyReader: 'qemu-img' }, { id: 'admin', keyring }, log),
      log,
    );
    expect(rev.verification).toMatchObject({ ok: true, method: 'full' });
    expect(warnings(lines)).toEqual([]);
    const run = lines.find((l) => l.msg === 'running rbd') as unknown as { argv: string[] };
    expect(run.argv.slice(1, 7)).toEqual(['--conf', conf, '--id', 'admin', '--keyring', keyring]);
    await expectRestoreMatchesSnapshot(rev);
  });

  it('fails with one clear line and leaves no revision when the image does not exist', async () => {
    const before = (await archive.revisions()).length;
    const { logger: log, lines } = captureLogger();
    const missing = createRbdSource(
      { pool: POOL, image: 'no-such-image', conf, 'full-always': false },
      { logger: log },
    );
    const error = await runBackup(archive, missing, { tags: ['test'], force: true, logger: log }).catch(
      (e) => e,
    );
    // Only the failure itself is reported, no follow-up noise from the snapshot clean-up.
    expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([]);
    expect(isBackyError(error, 'SOURCE_UNAVAILABLE')).toBe(true);
    expect(error.message).toMatch(
      /^rbd snap create rbd\/no-such-image@backy-\S+ failed \(exit status 2\): rbd: .*No such file or directory$/,
    );
    expect(error.message).not.toContain('\n');
    expect((await archive.revisions()).length).toBe(before);
    expect((await archive.scan()).interrupted).toEqual([]);
  });

  it('reports an unreachable cluster as unavailable', async () => {
    const unreachable = createRbdSource(
      { pool: POOL, image, conf: join(dirname(conf), 'missing.conf'), 'full-always': false },
      { logger },
    );
    const error = await runBackup(archive, unreachable, { tags: ['test'], force: true, logger }).catch(
      (e) => e,
    );
    expect(isBackyError(error)).toBe(true);
    expect(error.message).not.toContain('\n');
    expect(error.message).toMatch(/^rbd .* failed/);
  });

  it('checks at init whether the image exists', async () => {
    expect(await rbdSource.checkInit!({ pool: POOL, image, conf, 'full-always': false })).toEqual([]);
    expect(await rbdSource.checkInit!({ pool: POOL, image: 'nope', conf, 'full-always': false })).toEqual([
      'RBD image rbd/nope does not exist (yet)',
    ]);
  });
});
