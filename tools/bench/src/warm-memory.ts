// Shared by the benchmarks: see warmMemory.
import { spawnSync } from 'node:child_process';

/**
 * This VM hands freed memory back to its host (free page reporting, a couple of seconds after it is
 * freed), and touching such memory again costs several µs per 4 KiB page: up to ~2 s per GiB of page
 * cache or buffers a step allocates. Which step pays depended only on what ran before it, so before
 * every timed step (baseline included) a helper touches WARM_BYTES and frees them again: the step then
 * starts with warm free memory. BENCH_WARM=0 turns this off.
 */
export const WARM_BYTES = Number(process.env.BENCH_WARM ?? 2 * 1024 ** 3);
export function warmMemory(): void {
  if (WARM_BYTES > 0)
    spawnSync(process.execPath, ['-e', `Buffer.allocUnsafeSlow(${WARM_BYTES}).fill(1)`], { stdio: 'ignore' });
}
