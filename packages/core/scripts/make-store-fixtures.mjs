// Writes the archives of test-fixtures/main-2026-12/ with the built @backy/core (run `npx tsup` in
// packages/core first): a plain and an encrypted directory store, layout chunked, two revisions each.
// They were made once with the code of main before the storage stack was split into backend and
// repository (issue 25); store-fixtures.test.ts holds every later version to opening, verifying and
// restoring them byte for byte. Do not regenerate them to make that test pass.
//
//   node packages/core/scripts/make-store-fixtures.mjs packages/core/test-fixtures/main-2026-12
import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { Archive, newKeyFile, runBackup, writeKeyFile } from '../dist/index.js';

const CHUNK = 4 * 1024 * 1024;
const PASSPHRASE = 'fixture passphrase of main-2026-12';

/** A deterministic image: text that compresses well (chunk files of a few hundred bytes), a zero chunk and a short tail. */
export function fixtureImage(revision) {
  const line = (i) => `backy fixture main-2026-12 line ${i} revision-independent text\n`;
  const text = Buffer.alloc(CHUNK);
  let at = 0;
  for (let i = 0; at < CHUNK; i++) at += text.write(line(i % 997), at);
  const tail = Buffer.from(`the tail of revision ${revision}: it changes with every revision\n`.repeat(40));
  return Buffer.concat([text, Buffer.alloc(CHUNK), tail]);
}

const source = (data) => ({
  async backup(ctx) {
    await ctx.writer.resize(data.length);
    for (let index = 0; index < ctx.writer.chunkCount; index++) {
      const start = index * ctx.writer.chunkSize;
      const chunk = Buffer.from(data.subarray(start, start + ctx.writer.chunkLength(index)));
      ctx.reportRead(chunk.length);
      await ctx.writer.write(index, chunk);
    }
  },
});

const logger = pino({ level: 'silent' });
const out = resolve(process.argv[2] ?? 'test-fixtures/main-2026-12');
await rm(out, { recursive: true, force: true });
const manifest = {};
for (const kind of ['plain', 'encrypted']) {
  const dir = join(out, kind);
  await mkdir(dir, { recursive: true });
  const store = {};
  if (kind === 'encrypted') {
    await writeFile(join(dir, 'passphrase'), `${PASSPHRASE}\n`, { mode: 0o600 });
    await writeKeyFile(join(dir, 'backup.key'), await newKeyFile(PASSPHRASE));
    store.encryption = { 'key-file': 'backup.key', 'passphrase-file': 'passphrase' };
  }
  const archive = await Archive.init(dir, { source: { type: 'fixture' }, layout: 'chunked', store });
  manifest[kind] = [];
  for (const revision of [1, 2]) {
    const image = fixtureImage(revision);
    const rev = await runBackup(archive, source(image), { tags: [`r${revision}`], logger });
    manifest[kind].push({ id: rev.uuid, sha256: createHash('sha256').update(image).digest('hex') });
  }
  await rm(join(dir, 'backy.log'), { force: true });
}
await writeFile(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
