import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readRevisionFile } from '../revision.js';
import { tempDir } from '../testing/helpers.js';
import { legacyRevisionText } from './rev-file.js';

// As backy 2.1.1 wrote it (the shared fixture's PCSmHgRotoNeKRgDenggoY.rev).
const WRITTEN_BY_2X = `parent: d9NNstt5TjCt3wA2D4NgbF
stats:
  bytes_written: 6291973
  duration: 0.02359795570373535
tags:
- weekly
- daily
timestamp: 2026-12-01 09:56:18.288538+00:00
uuid: PCSmHgRotoNeKRgDenggoY
`;

let cleanup: (() => Promise<void>) | null = null;
afterEach(async () => {
  await cleanup?.();
  cleanup = null;
});

async function revFile(text: string): Promise<string> {
  const dir = await tempDir();
  cleanup = dir.cleanup;
  const path = join(dir.path, 'PCSmHgRotoNeKRgDenggoY.rev');
  await writeFile(path, text);
  return path;
}

describe('legacyRevisionText', () => {
  it("puts trust and tags where PyYAML would, and keeps every other byte of 2.x's file", async () => {
    const path = await revFile(WRITTEN_BY_2X);
    const current = await readRevisionFile(path);
    const text = await legacyRevisionText(path, current, {
      ...current,
      trust: 'verified',
      tags: ['weekly', 'on'],
    });
    expect(text).toBe(
      WRITTEN_BY_2X.replace('- daily\n', '- "on"\n').replace('uuid:', 'trust: verified\nuuid:'),
    );
    await writeFile(path, text);
    expect(await readRevisionFile(path)).toMatchObject({ trust: 'verified', tags: ['weekly', 'on'] });
    // Nothing left: an empty list, as PyYAML writes it.
    const none = await legacyRevisionText(path, await readRevisionFile(path), {
      ...(await readRevisionFile(path)),
      tags: [],
    });
    expect(none).toContain('\ntags: []\ntimestamp: 2026-12-01 09:56:18.288538+00:00\n');
  });

  it('refuses what it cannot write in 2.x form: another field, or a file 2.x did not write', async () => {
    const path = await revFile(WRITTEN_BY_2X);
    const current = await readRevisionFile(path);
    await expect(legacyRevisionText(path, current, { ...current, parent: null })).rejects.toThrow(
      /keeps only trust and tags changes in 2\.x's format; run `backy upgrade` first/,
    );
    const flow = `{uuid: PCSmHgRotoNeKRgDenggoY, parent: null, timestamp: "2026-12-01 09:56:18.288538+00:00", stats: {bytes_written: 1, duration: 1}}\n`;
    await writeFile(path, flow);
    const fromFlow = await readRevisionFile(path);
    await expect(legacyRevisionText(path, fromFlow, { ...fromFlow, trust: 'distrusted' })).rejects.toThrow(
      /not in the block style backy 2\.x writes/,
    );
    expect(await readFile(path, 'utf8')).toBe(flow);
  });
});
