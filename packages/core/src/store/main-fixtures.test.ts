import { chmod, cp, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Archive } from '../archive/index.js';
import { runBackup } from '../backup.js';
import { bufferSource, silent } from '../test-helpers.js';
import { restoreToBuffer, sha256Hex, tempDir } from '../testing/helpers.js';
import {
  type MainFixtureRevisions,
  mainFixtureImage,
  mainFixtureProblems,
} from '../testing/main-fixtures.js';

// Archives written by main before the storage stack was split into backend and repository (issue 25),
// by scripts/make-store-fixtures.mjs: every later version must open, verify and restore them unchanged,
// and leave their chunk files as they are.
const FIXTURES = fileURLToPath(new URL('../../test-fixtures/main-2026-12/', import.meta.url));

type Manifest = Record<string, MainFixtureRevisions>;

/** Every file under `root` with its content, by path relative to it. */
async function files(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out.set(path.slice(root.length), sha256Hex(await readFile(path)));
  }
  return out;
}

let dir: { path: string; cleanup: () => Promise<void> };
let manifest: Manifest;
beforeEach(async () => {
  dir = await tempDir('backy-main-fixtures-');
  manifest = JSON.parse(await readFile(join(FIXTURES, 'manifest.json'), 'utf8')) as Manifest;
});
afterEach(() => dir.cleanup());

/** A copy of the fixture archive `kind` (git keeps no modes: the key file must be the owner's alone). */
async function copyOf(kind: string): Promise<string> {
  const path = join(dir.path, kind);
  await cp(join(FIXTURES, kind), path, { recursive: true });
  for (const secret of ['backup.key', 'passphrase']) await chmod(join(path, secret), 0o600).catch(() => {});
  return path;
}

describe.each(['plain', 'encrypted'])('the %s directory archive written by main in 2026-12', (kind) => {
  it('lists, verifies and restores every revision byte for byte, and changes no chunk file', async () => {
    const path = await copyOf(kind);
    const before = await files(join(path, 'chunks'));
    expect([...before.keys()].filter((f) => /^\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(f))).toHaveLength(3);
    const archive = await Archive.open(path);
    const expected = manifest[kind]!;
    expect(await mainFixtureProblems(archive, expected, silent)).toEqual([]);
    const after = await files(join(path, 'chunks'));
    for (const [file, digest] of before) expect(after.get(file), file).toBe(digest);
  });

  it('takes a new backup on top of the old revisions that restores with them', async () => {
    const path = await copyOf(kind);
    const archive = await Archive.open(path);
    const third = mainFixtureImage(3);
    const rev = await runBackup(
      archive,
      bufferSource(() => third),
      { tags: ['r3'], logger: silent },
    );
    expect(rev.parent).toBe(manifest[kind]![1]!.id);
    expect(rev.stats.chunks_written).toBe(1); // only the tail changed
    // New chunk files keep main's bytes: BKC1 with codec none around the sealed object when encrypted,
    // so that an older backy sharing the store still reads them.
    const fresh = [...(await files(join(path, 'chunks'))).keys()].filter((f) => /\/[0-9a-f]{64}$/.test(f));
    expect(fresh).toHaveLength(4);
    for (const file of fresh) {
      const head = (await readFile(join(path, 'chunks', file))).subarray(0, 16);
      expect(head.subarray(0, 4).toString()).toBe('BKC1');
      if (kind === 'encrypted') {
        expect(head[4]).toBe(0);
        expect(head.subarray(12, 16).toString()).toBe('BKE1');
      } else expect(head[4]).not.toBe(0);
    }
    expect((await restoreToBuffer(await Archive.open(path), rev.uuid)).equals(third)).toBe(true);
    expect((await restoreToBuffer(archive, manifest[kind]![0]!.id)).equals(mainFixtureImage(1))).toBe(true);
  });
});
