import { describe, expect, it } from 'vitest';
import {
  isRevisionFileName,
  LAST_REV_LINK,
  mapFileName,
  pendingFileName,
  revFileName,
  revisionFileName,
  revisionIdOfMapFile,
  revisionIdOfPendingFile,
  revisionIdOfRevFile,
  revisionText,
} from './archive-files.js';

const ID = 'VNdwsTQgMJ3AxWhpmA8FZm';

describe('archive file names', () => {
  it('name a revision’s files and read the ID back', () => {
    expect([revFileName(ID), mapFileName(ID), pendingFileName(ID)]).toEqual([
      `${ID}.rev`,
      `${ID}.map`,
      `${ID}.pending`,
    ]);
    expect([revisionFileName(ID, 'rev'), revisionFileName(ID, 'map')]).toEqual([`${ID}.rev`, `${ID}.map`]);
    expect(revisionIdOfRevFile(`${ID}.rev`)).toBe(ID);
    expect(revisionIdOfMapFile(`${ID}.map`)).toBe(ID);
    expect(revisionIdOfPendingFile(`${ID}.pending`)).toBe(ID);
  });

  it('take neither backy 2.x’s last.rev link, nor temp files, nor other names for revisions', () => {
    expect(LAST_REV_LINK).toBe('last.rev');
    for (const name of ['last.rev', `.${ID}.rev.1a2b.tmp`, `.${ID}.rev`, '.rev', ID, `${ID}.map`, 'config'])
      expect(isRevisionFileName(name), name).toBe(false);
    expect(revisionIdOfMapFile(`.${ID}.map`)).toBeNull();
    expect(revisionIdOfPendingFile(`${ID}.rev`)).toBeNull();
  });

  it('write a .rev in the order of its keys, in block style', () => {
    const text = revisionText({
      uuid: ID,
      timestamp: '2026-01-01T00:00:00.000Z',
      parent: null,
      tags: ['daily'],
    });
    expect(text).toBe(`uuid: ${ID}\ntimestamp: 2026-01-01T00:00:00.000Z\nparent: null\ntags:\n  - daily\n`);
  });
});
