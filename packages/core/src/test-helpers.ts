// Helpers for core's own tests (not exported); what other packages' tests share is in testing/helpers.ts.
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { expect } from 'vitest';
import { Archive } from './archive/index.js';
import { runBackup } from './backup.js';
import { type BackyErrorCode, isBackyError } from './errors.js';
import { bufferSource } from './testing/helpers.js';

export { MiB } from './testing/helpers.js';
export { bufferSource };

export const silent = pino({ level: 'silent' });

/** A backup of `data` into `archive` (tagged `tags`), logging nothing. */
export const backupOf = (archive: Archive, data: Buffer, tags = ['daily']) =>
  runBackup(
    archive,
    bufferSource(() => data),
    { tags, logger: silent },
  );

/** Asserts that `promise` rejects with a BackyError `code` of one line, and returns it. */
export async function rejection(promise: Promise<unknown>, code: BackyErrorCode): Promise<Error> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e as Error,
  );
  expect(error, 'expected a rejection').not.toBeNull();
  expect(isBackyError(error, code), `${code} expected, got ${(error as Error).message}`).toBe(true);
  expect((error as Error).message).not.toContain('\n');
  return error!;
}

export async function makeArchive(dir: string, extra: Record<string, unknown> = {}): Promise<Archive> {
  return Archive.init(join(dir, 'archive'), { source: { type: 'test' }, ...extra });
}

export async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  const handle = await open(path, 'r+');
  await handle.write(data, 0, data.length, offset);
  await handle.close();
}

export { writeFile };
