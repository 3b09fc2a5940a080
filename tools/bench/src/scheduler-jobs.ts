// The jobs of the scheduler benchmarks (bench-scheduler, bench-api): archives whose newest revision is
// fresh, written directly, so that no job is due while a benchmark runs.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
// The yaml package in the version @backy/core has (the catalog's), to write revision files as backy does.
import { stringify } from 'yaml';

const ID = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';

const newId = (): string => Array.from(randomBytes(22), (b) => ID[b % ID.length]).join('');

/** `count` archives of `revisions` revisions each under `base`, written directly: the jobs of the config. */
export async function prepareJobs(
  base: string,
  image: string,
  count: number,
  revisions: number,
): Promise<Record<string, unknown>> {
  const jobs: Record<string, unknown> = {};
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    const name = `vm${String(i).padStart(4, '0')}.example.com`;
    jobs[name] = { schedule: 'default', source: { type: 'file', filename: image } };
    const archive = join(base, name);
    await mkdir(archive);
    const writes: Promise<void>[] = [];
    for (let r = 0; r < revisions; r++) {
      const uuid = newId();
      const rev = {
        uuid,
        timestamp: new Date(now - r * 86400_000 - 1000).toISOString(),
        parent: null,
        tags: r === 0 ? ['daily', 'weekly'] : ['daily'],
        trust: 'trusted',
        size: 65536,
        backend_type: 'chunked',
        source_type: 'file',
        stats: {
          bytes_written: 65536,
          bytes_read: 65536,
          duration: 12.5,
          chunks_written: 1,
          chunks_reused: 0,
          chunks_zero: 0,
        },
        verification: {
          method: 'full',
          chunks_checked: 1,
          chunks_total: 1,
          ok: true,
          mismatches: [],
          timestamp: new Date(now).toISOString(),
        },
      };
      writes.push(writeFile(join(archive, `${uuid}.rev`), stringify(rev, { sortMapEntries: false })));
    }
    await Promise.all(writes);
  }
  return jobs;
}
