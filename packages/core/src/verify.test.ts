import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup } from './backup.js';
import { bufferSource, MiB, makeArchive, silent } from './test-helpers.js';
import { tempDir } from './testing/helpers.js';
import { verifyRevisions } from './verify.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(() => dir.cleanup());

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
