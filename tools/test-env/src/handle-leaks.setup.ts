// Every project's setup file (vitest-project.ts): a test file fails when a FileHandle it (or an earlier
// file in the same worker) opened was left to the garbage collector instead of being closed.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll } from 'vitest';
import { collectGarbage, describeLeaks, trackHandleLeaks } from './handle-leaks.js';

const leaks = trackHandleLeaks();
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

afterAll(async () => {
  // Collections at the end of each file find its forgotten handles on every run, not only when the heap
  // happens to fill up (and then in whichever file runs at the time).
  await collectGarbage(gc);
  if (leaks.length === 0) return;
  throw new Error(describeLeaks(leaks.splice(0)));
});
