// Every project's setup file (vitest-project.ts): a test file fails when a FileHandle it (or an earlier
// file in the same worker) opened was closed by the garbage collector instead of by backy.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll } from 'vitest';
import { describeLeaks, trackHandleLeaks } from './handle-leaks.js';

const leaks = trackHandleLeaks();
// A collection at the end of each file finds its forgotten handles every run, not when the heap happens
// to fill up (and then in whichever file runs at the time).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

afterAll(async () => {
  gc();
  // Node warns on the next turns of the loop after the collection closed the descriptors.
  await new Promise((r) => setTimeout(r, 50));
  if (leaks.length === 0) return;
  const found = leaks.splice(0);
  throw new Error(describeLeaks(found));
});
