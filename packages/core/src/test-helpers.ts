// Helpers for core's own tests (not exported); what other packages' tests share is in testing/helpers.ts.
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { Archive } from './archive/index.js';

export { bufferSource, MiB } from './testing/helpers.js';

export const silent = pino({ level: 'silent' });

export async function makeArchive(dir: string, extra: Record<string, unknown> = {}): Promise<Archive> {
  return Archive.init(join(dir, 'archive'), { source: { type: 'test' }, ...extra });
}

export async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  const handle = await open(path, 'r+');
  await handle.write(data, 0, data.length, offset);
  await handle.close();
}

export { writeFile };
