// Protected revisions (issue 27): expire, forget and purge leave a protected revision and its data
// alone until `unprotect`; copy carries the flag; status shows it.
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from '@backy/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { backy, oneLineError, tempDir } from './helpers.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.cleanup());

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

type Rev = { uuid: string; tags: string[]; protected?: boolean };

describe('backy protect', () => {
  it('keeps a protected revision through expire, forget and purge, restorable; unprotect lets it go', async () => {
    const image = join(dir.path, 'disk.img');
    const arch = join(dir.path, 'arch');
    const b = (...args: string[]) => backy(['-b', arch, ...args]);
    await writeFile(image, randomBytes(2 * MiB));
    expect(backy(['-b', arch, 'init', 'file', image]).code).toBe(0);
    const config = parse(await readFile(join(arch, 'config'), 'utf8'));
    config.schedule = { daily: { interval: '1s', keep: 1 } };
    await writeFile(join(arch, 'config'), stringify(config));
    const first = await readFile(image);
    expect(b('backup', 'daily').code).toBe(0);
    const revs = () => JSON.parse(b('status', '--json').stdout).revisions as Rev[];
    const oldest = revs()[0]!.uuid;

    // Usage errors name what is missing; nothing changes.
    expect(oneLineError(b('protect'))).toBe('backy: error: protect needs -r SPEC');
    const dry = b('protect', '-r', oldest, '--dry-run');
    expect(dry.stdout).toMatch(new RegExp(`^${oldest}: would be protected \\(`));
    expect(revs()[0]!.protected).toBeUndefined();

    const p = b('protect', '-r', oldest, '--json');
    expect(p.code, p.stderr).toBe(0);
    expect(JSON.parse(p.stdout).revisions).toEqual([
      { uuid: oldest, timestamp: expect.any(String), tags: ['daily'], result: 'protected' },
    ]);
    expect(b('protect', '-r', oldest).stdout).toBe(`${oldest}: protected already\n`);
    expect(revs()[0]!.protected).toBe(true);
    expect(b('status').stdout).toMatch(new RegExp(`${oldest}.*\\bprotected\\b`));

    // forget refuses it, alone or in a set, and forgets nothing of the set.
    await writeFile(image, randomBytes(2 * MiB));
    expect(b('backup', 'daily').code).toBe(0);
    const forget = b('forget', '-r', oldest);
    expect(forget.code).not.toBe(0);
    expect(oneLineError(forget)).toBe(
      `backy: error: forget -r ${oldest}: revision ${oldest} is protected; nothing was forgotten (\`backy unprotect\` first, or choose others)`,
    );
    expect(b('forget', '-r', 'all', '--force').code).not.toBe(0);
    expect(revs()).toHaveLength(2);

    // expire takes its tag (keep 1 of daily) but leaves the revision; purge keeps its chunks.
    await writeFile(image, randomBytes(2 * MiB));
    expect(b('backup', 'daily').code).toBe(0);
    await new Promise((r) => setTimeout(r, 1100));
    const expire = b('expire', '--json');
    expect(expire.code, expire.stderr).toBe(0);
    const actions = JSON.parse(expire.stdout).revisions as { uuid: string; keptBy: string | null }[];
    expect(actions.find((a) => a.uuid === oldest)).toEqual({
      uuid: oldest,
      removed: false,
      expiredTags: ['daily'],
      keptBy: 'protected',
    });
    expect(revs().map((r) => [r.uuid === oldest, r.tags])).toEqual([
      [true, []],
      [false, ['daily']],
    ]);
    expect(b('expire').stdout).toBe('nothing to expire\n');
    expect(b('purge').code).toBe(0);
    const out = join(dir.path, 'restored.img');
    expect(b('restore', '-r', oldest, out).code).toBe(0);
    expect(sha(await readFile(out))).toBe(sha(first));

    // copy carries the flag.
    const target = join(dir.path, 'copy');
    const copy = b('copy', '--init-from-source', target);
    expect(copy.code, copy.stderr).toBe(0);
    const copied = JSON.parse(backy(['-b', target, 'status', '--json']).stdout).revisions as Rev[];
    expect(copied.find((r) => r.uuid === oldest)?.protected).toBe(true);

    // unprotect: the next expire removes the tagless revision.
    expect(b('unprotect', '-r', oldest).stdout).toBe(`${oldest}: unprotected\n`);
    expect(revs()[0]!.protected).toBeUndefined();
    expect(b('expire').stdout).toContain(`${oldest}: removed`);
    expect(revs().map((r) => r.uuid)).not.toContain(oldest);
  });
});
