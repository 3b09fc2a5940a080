import { open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { collectGarbage, describeLeaks, trackHandleLeaks } from './handle-leaks.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Opens a handle and drops it, in a function of its own so no reference survives. */
async function leakOne(path: string): Promise<void> {
  await open(path, 'r');
}

describe('FileHandle leak tracking', () => {
  it('names where a handle left to the garbage collector was opened, after one round of collections', async () => {
    const leaks = trackHandleLeaks();
    await leakOne('/dev/null');
    await collectGarbage(gc);
    const found = leaks.splice(0);
    expect(found).toEqual([{ opened: '/dev/null', stack: expect.stringContaining('leakOne') }]);
    expect(describeLeaks(found)).toMatch(
      /^1 FileHandle\(s\) never closed, .*\n\/dev\/null, opened at:\n.*leakOne/s,
    );
  });

  it('reports nothing for closed handles, also when a leak reuses their descriptor number', async () => {
    const leaks = trackHandleLeaks();
    const handle = await open('/dev/null', 'r');
    const fd = handle.fd;
    await handle.close();
    // The same number again, closed through a stream and through `await using`-style disposal.
    const streamed = await open('/dev/zero', 'r');
    // Usually the same number (nothing else in this worker opens files meanwhile); the check holds either way.
    expect(streamed.fd).toBeGreaterThanOrEqual(0);
    const stream = streamed.createReadStream({ start: 0, end: 9 });
    for await (const _ of stream);
    await new Promise((r) => stream.close(r));
    const disposed = await open('/dev/null', 'r');
    await disposed[Symbol.asyncDispose]();
    const file = join(tmpdir(), `backy-handle-leak-${process.pid}`);
    await writeFile(file, 'x');
    try {
      await leakOne(file);
      await collectGarbage(gc);
    } finally {
      await rm(file, { force: true });
    }
    expect(leaks.splice(0).map((l) => l.opened)).toEqual([file]);
    expect(fd).toBeGreaterThanOrEqual(0);
  });
});
