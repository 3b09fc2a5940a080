import { open } from 'node:fs/promises';
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
    expect(streamed.fd).toBe(fd);
    const stream = streamed.createReadStream({ start: 0, end: 9 });
    for await (const _ of stream);
    await new Promise((r) => stream.close(r));
    const disposed = await open('/dev/null', 'r');
    await disposed[Symbol.asyncDispose]();
    await leakOne('/etc/hostname');
    await collectGarbage(gc);
    expect(leaks.splice(0).map((l) => l.opened)).toEqual(['/etc/hostname']);
  });
});
