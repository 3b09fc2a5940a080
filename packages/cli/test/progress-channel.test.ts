import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB, vmLikeData } from '@backy/core/testing';
import { ChildProcessRunner, type RunProgress } from '@backy/scheduler';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, backy, tempDir } from './helpers.js';

// The daemon hears a backup's progress from the real CLI through the channel the runner gives it.

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.cleanup());

describe('the progress channel between the daemon and its backups', () => {
  it('reports a backup’s phase and bytes as it runs, ending with all of them done', async () => {
    const image = join(dir.path, 'vm.img');
    await writeFile(image, vmLikeData(96 * MiB));
    const archive = join(dir.path, 'archive');
    expect(backy(['-b', archive, 'init', 'file', image]).code).toBe(0);
    const heard: RunProgress[] = [];
    const runner = new ChildProcessRunner({ command: [process.execPath, BIN] });
    const result = await runner.backup({
      job: 'vm',
      dir: archive,
      tags: ['daily'],
      signal: new AbortController().signal,
      onProgress: (p) => heard.push(p),
    });
    expect(result.stderr).toBe('');
    expect(result.ok).toBe(true);
    const backup = heard.filter((p) => p.phase === 'backup');
    expect(backup.length).toBeGreaterThan(0);
    expect(backup.at(-1)).toEqual({ phase: 'backup', done: 96 * MiB, total: 96 * MiB });
    const dones = backup.map((p) => p.done);
    expect(dones).toEqual([...dones].sort((a, b) => a - b));
  });

  it('reports a verify’s bytes as it runs, as the daemon’s verify jobs hear them', async () => {
    const archive = join(dir.path, 'archive');
    const heard: RunProgress[] = [];
    const runner = new ChildProcessRunner({ command: [process.execPath, BIN] });
    const result = await runner.verify({
      job: 'vm',
      dir: archive,
      outdatedAfter: 1,
      signal: new AbortController().signal,
      onProgress: (p) => heard.push(p),
    });
    expect(result.stderr).toBe('');
    expect(result.ok).toBe(true);
    expect(heard.length).toBeGreaterThan(0);
    expect(heard.every((p) => p.phase === 'verify')).toBe(true);
    const last = heard.at(-1)!;
    expect(last.done).toBe(last.total);
    expect(last.total).toBeGreaterThan(0);
  });

  it('a backy run by hand with no channel, or a bad one, backs up as before', () => {
    const archive = join(dir.path, 'archive');
    for (const value of ['', 'x', '1', '99']) {
      const r = backy(['-b', archive, 'backup', 'manual:t'], { env: { BACKY_PROGRESS_FD: value } });
      expect([value, r.code, r.stderr]).toEqual([value, 0, '']);
    }
  });
});
