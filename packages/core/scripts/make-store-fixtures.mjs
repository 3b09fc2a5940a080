// Writes the archives of test-fixtures/main-2026-12/ with the built @backy/core (run `npx tsup` in
// packages/core first): a plain and an encrypted directory store, layout chunked, two revisions each.
// They were made once with the code of main before the storage stack was split into backend and
// repository (issue 25); src/store/main-fixtures.test.ts holds every later version to opening, verifying and
// restoring them byte for byte. Do not regenerate them to make that test pass.
//
//   node packages/core/scripts/make-store-fixtures.mjs packages/core/test-fixtures/main-2026-12
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { Archive, newKeyFile, writeKeyFile } from '../dist/index.js';
import { backUpMainFixture, MAIN_FIXTURE_PASSPHRASE } from '../dist/testing/index.js';

const logger = pino({ level: 'silent' });
const out = resolve(process.argv[2] ?? 'test-fixtures/main-2026-12');
await rm(out, { recursive: true, force: true });
const manifest = {};
for (const kind of ['plain', 'encrypted']) {
  const dir = join(out, kind);
  await mkdir(dir, { recursive: true });
  const store = {};
  if (kind === 'encrypted') {
    await writeFile(join(dir, 'passphrase'), `${MAIN_FIXTURE_PASSPHRASE}\n`, { mode: 0o600 });
    await writeKeyFile(join(dir, 'backup.key'), await newKeyFile(MAIN_FIXTURE_PASSPHRASE));
    store.encryption = { 'key-file': 'backup.key', 'passphrase-file': 'passphrase' };
  }
  const archive = await Archive.init(dir, { source: { type: 'fixture' }, layout: 'chunked', store });
  manifest[kind] = await backUpMainFixture(archive, logger);
  await rm(join(dir, 'backy.log'), { force: true });
}
await writeFile(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
