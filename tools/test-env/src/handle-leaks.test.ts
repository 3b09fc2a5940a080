import { open } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { describeLeaks, trackHandleLeaks } from './handle-leaks.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Opens a handle and drops it, in a function of its own so no reference survives. */
async function leakOne(path: string): Promise<number> {
  const handle = await open(path, 'r');
  return handle.fd;
}

async function collectUntil(probe: () => boolean, rounds = 100): Promise<void> {
  for (let i = 0; i < rounds && !probe(); i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('FileHandle leak tracking', () => {
  it('names where a handle left to the garbage collector was opened', async () => {
    const leaks = trackHandleLeaks();
    const fd = await leakOne('/dev/null');
    await collectUntil(() => leaks.some((l) => l.fd === fd));
    const found = leaks.splice(0);
    expect(found).toEqual([{ fd, openedAt: expect.stringContaining('leakOne') }]);
    expect(describeLeaks(found)).toMatch(
      /^1 FileHandle\(s\) never closed .*\nfile descriptor \d+, closed by the garbage collector, opened at:\n.*leakOne/s,
    );
  });

  it('reports nothing for handles that were closed', async () => {
    const leaks = trackHandleLeaks();
    const handle = await open('/dev/null', 'r');
    const fd = handle.fd;
    await handle.close();
    // Another handle gets the same number; it is closed too.
    const again = await open('/dev/null', 'r');
    await again.close();
    await collectUntil(() => false, 10);
    expect(leaks.filter((l) => l.fd === fd)).toEqual([]);
  });
});
