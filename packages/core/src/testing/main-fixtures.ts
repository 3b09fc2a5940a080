/**
 * What the archives in `test-fixtures/main-2026-12/` (core's directory archives, store-s3's bucket) were
 * made of, for the scripts that wrote them once with main's code before the storage stack was split
 * (issue 25: `packages/core/scripts/make-store-fixtures.mjs`, `packages/store-s3/scripts/make-s3-fixtures.mjs`)
 * and for the tests that restore them and compare. The fixtures' manifests hold the SHA-256 of each image:
 * a change here fails those tests, and the fixtures are never regenerated to follow it.
 */
import type { Logger } from 'pino';
import type { Archive } from '../archive/index.js';
import { runBackup } from '../backup.js';
import { sha256Hex } from '../store/chunk-hash.js';
import { MiB } from '../units.js';
import { verifyRevisions } from '../verify.js';
import { bufferSource, restoreToBuffer } from './helpers.js';

const CHUNK = 4 * MiB;

/** The passphrase of the encrypted fixture archives. */
export const MAIN_FIXTURE_PASSPHRASE = 'fixture passphrase of main-2026-12';

/**
 * The image of `revision`: a chunk of text that compresses well (chunk files of a few hundred bytes), a
 * zero chunk, and a short tail that changes with every revision.
 */
export function mainFixtureImage(revision: number): Buffer {
  const line = (i: number) => `backy fixture main-2026-12 line ${i} revision-independent text\n`;
  const text = Buffer.alloc(CHUNK);
  let at = 0;
  for (let i = 0; at < CHUNK; i++) at += text.write(line(i % 997), at);
  const tail = Buffer.from(`the tail of revision ${revision}: it changes with every revision\n`.repeat(40));
  return Buffer.concat([text, Buffer.alloc(CHUNK), tail]);
}

/** What a fixture's manifest.json says of one archive: its revisions in order, and each image's SHA-256. */
export type MainFixtureRevisions = { id: string; sha256: string }[];

/** Backs up the images of revisions 1 and 2 into `archive`, as the scripts made the fixtures. */
export async function backUpMainFixture(archive: Archive, logger: Logger): Promise<MainFixtureRevisions> {
  const made: MainFixtureRevisions = [];
  for (const revision of [1, 2]) {
    const image = mainFixtureImage(revision);
    const rev = await runBackup(
      archive,
      bufferSource(() => image),
      { tags: [`r${revision}`], logger },
    );
    made.push({ id: rev.uuid, sha256: sha256Hex(image) });
  }
  return made;
}

/**
 * What is wrong with a fixture archive against its manifest, one line each (none when all is well): other
 * revisions than listed, a revision that fails verify, or one that restores to other bytes than its image.
 */
export async function mainFixtureProblems(
  archive: Archive,
  expected: MainFixtureRevisions,
  logger: Logger,
): Promise<string[]> {
  const problems: string[] = [];
  const revisions = await archive.revisions();
  const ids = revisions.map((r) => r.uuid).join(' ');
  if (ids !== expected.map((r) => r.id).join(' ')) problems.push(`the archive has the revisions ${ids}`);
  for (const result of await verifyRevisions(archive, revisions, { logger }))
    if (!result.ok) problems.push(`${result.uuid} fails verify`);
  for (const [i, { id, sha256 }] of expected.entries()) {
    const restored = await restoreToBuffer(archive, id);
    if (sha256Hex(restored) !== sha256) problems.push(`${id} restores to other bytes than the manifest's`);
    if (!restored.equals(mainFixtureImage(i + 1)))
      problems.push(`${id} is not the image of revision ${i + 1}`);
  }
  return problems;
}
