import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { mapPath } from './archive/paths.js';
import { runBackup } from './backup.js';
import { readRevisionFile } from './revision.js';
import { bufferSource, MiB, makeArchive, silent } from './test-helpers.js';
import { tempDir } from './testing/helpers.js';
import { verifyRevisions } from './verify.js';

// When `verify` last re-read a revision is recorded beside its trust (`verified_at`): the scheduler's
// verify jobs choose revisions by it.

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

describe('verify records when it re-read each revision', () => {
  it('sets verified_at with the trust, good or damaged; a revision file without it stays readable', async () => {
    const archive = await makeArchive(join(dir.path, 'a'));
    const data = randomBytes(5 * MiB);
    const rev = await runBackup(
      archive,
      bufferSource(() => data),
      { tags: ['daily'], logger: silent },
    );
    const revPath = join(archive.path, `${rev.uuid}.rev`);
    // A backup alone does not count as a verify run.
    expect(parse(await readFile(revPath, 'utf8')).verified_at).toBeUndefined();

    const before = Date.now();
    await verifyRevisions(archive, [rev], { logger: silent });
    const verified = await readRevisionFile(revPath);
    expect(verified.trust).toBe('verified');
    const at = Date.parse(verified.verified_at!);
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual(Date.now());

    // Damage one chunk: verify distrusts the revision and records that it looked.
    const map = await readFile(mapPath(archive.path, rev.uuid));
    const hash = map.subarray(32, 64).toString('hex');
    const chunk = join(archive.path, 'chunks', hash.slice(0, 2), hash);
    const bytes = await readFile(chunk);
    bytes[bytes.length - 1]! ^= 0xff;
    await writeFile(chunk, bytes);
    await new Promise((r) => setTimeout(r, 5));
    const [result] = await verifyRevisions(archive, [await archive.resolveOne(rev.uuid)], { logger: silent });
    expect(result!.ok).toBe(false);
    const damaged = await readRevisionFile(revPath);
    expect(damaged.trust).toBe('distrusted');
    expect(Date.parse(damaged.verified_at!)).toBeGreaterThan(at);

    // A .rev written before verify recorded the time reads as never verified.
    const { verified_at: _, ...old } = parse(await readFile(revPath, 'utf8'));
    await writeFile(revPath, stringify(old));
    expect((await readRevisionFile(revPath)).verified_at).toBeUndefined();
    expect((await archive.resolveOne(rev.uuid)).uuid).toBe(rev.uuid);
  });
});

describe('verifyRevisions', () => {
  it('reports a revision forgotten before its map was read as gone, not as damaged', async () => {
    const archive = await makeArchive(dir.path);
    const data = randomBytes(2 * MiB);
    const rev = await runBackup(
      archive,
      bufferSource(() => data),
      { tags: ['daily'], logger: silent },
    );
    await archive.deleteRevision(rev.uuid); // what `backy forget` in another process does
    const records: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => records.push(JSON.parse(line)) });
    const [result] = await verifyRevisions(archive, [rev], { logger });
    expect(result).toMatchObject({ uuid: rev.uuid, ok: false, gone: true });
    expect(records.map((r) => [r.level, r.msg])).toEqual([
      [30, 'revision was forgotten while it was verified'],
    ]);
    expect(await archive.revisions()).toEqual([]);
  });
});
